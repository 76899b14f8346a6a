"""Run one bulk import with progress, an error report and a summary (``import`` and ``demo``).

Only wiring: the rows come from :func:`asyncmembers.sources.open_source`, the work is
:func:`asyncmembers.bulk.bulk_import`, failures are written by
:class:`asyncmembers.report.ErrorReportWriter` as they happen, and the summary, the
``--summary-json`` file and the exit status all read the one :class:`BulkResult`.

Stopping: the first SIGINT or SIGTERM sets the engine's ``stop`` event: nothing new is read
or sent, the requests in flight finish (journaled, and their failures reported), and the
partial summary is printed (exit 130 or 143). A second signal cancels the engine at once
(its workers stop and the journal is closed).
"""

from __future__ import annotations

import asyncio
import os

import attrs

from ..bulk import BulkResult, Outcome, Progress, StoppedError, bulk_import
from ..client import Client
from ..errors import LosantError
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    current_stop,
    exit_code_for,
    one_line,
    open_error_report,
    write_failed_row,
)
from ._output import (
    ProgressMode,
    make_progress,
    out_console,
    print_failures,
    print_summary,
    summary_writer,
)
from ._threaded import InputRows

__all__ = ["ImportRun", "run_import"]


@attrs.define
class ImportRun:
    """How an import ended: its exit status, how (complete, interrupted, stopped), the result."""

    exit_code: int
    status: str
    result: BulkResult | None = None
    report_rows: int = 0


async def run_import(
    client: Client,
    source: InputRows,
    *,
    instance_id: str,
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    errors: str | os.PathLike[str] | None = None,
    summary_json: str | None = None,
    losantdomain: str | None = None,
    progress: ProgressMode = "plain",
    total: int | None = None,
    label: str = "Importing",
    update_roles: bool = False,
    source_path: str | os.PathLike[str] | None = None,
) -> ImportRun:
    """Import ``source``, print the summary and return how it ended.

    A fatal API error or a file that turns unreadable part-way prints the partial summary,
    then raises :class:`CliError` with the error's one line and exit status. The journal
    may not be ``source_path``, the error report or the summary file (exit 2).
    """
    stop = current_stop()
    report = open_error_report(
        source.columns,
        journal=journal,
        errors=errors,
        summary_json=summary_json,
        source_path=source_path,
        on_refusal=source.close,
    )

    live = Progress(total=total)

    def on_outcome(outcome: Outcome) -> None:
        if report is not None and outcome.kind == "failed" and outcome.error is not None:
            write_failed_row(report, errors, outcome.member, outcome.error)

    display = make_progress(progress, live, label=label)
    out = out_console()
    report_path = None if errors is None else os.fspath(errors)

    summary_file = summary_writer(summary_json, live)

    display.start()
    try:
        result = await bulk_import(
            client,
            instanceId=instance_id,
            members=source,
            concurrency=concurrency,
            max_rate=max_rate,
            dry_run=dry_run,
            journal=journal,
            on_outcome=on_outcome,
            losantdomain=losantdomain,
            update_roles=update_roles,
            progress=live,
            protect=(source_path, errors, summary_json),
            stop=stop.event(),
        )
    except asyncio.CancelledError:
        # A second signal: the engine has stopped its workers and closed the journal.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        display.stop(complete=False)
        out.print(
            f"{stop.word} again: stopped at once after {live.done:,} rows. " + _again_hint(journal),
            highlight=False,
        )
        summary_file(stop.exit_code, "interrupted", None, f"{stop.word.lower()} twice")
        return ImportRun(stop.exit_code, "interrupted", report_rows=report.count if report else 0)
    except StoppedError as exc:
        display.stop(complete=False)
        partial = exc.result if isinstance(exc.result, BulkResult) else None
        if progress == "rich":
            out.print()
        if partial is not None:
            print_summary(out, partial, status="interrupted")
            print_failures(out, partial, errors_path=report_path)
        done = partial.total if partial is not None else live.done
        out.print(f"{stop.word} after {done:,} rows. {_again_hint(journal)}", highlight=False)
        summary_file(stop.exit_code, "interrupted", partial, None)
        return ImportRun(
            stop.exit_code, "interrupted", partial, report_rows=report.count if report else 0
        )
    except LosantError as exc:
        display.stop(complete=False)
        partial = exc.result
        code = exit_code_for(exc)
        if partial is not None and partial.total:
            print_summary(out, partial, status="stopped")
        summary_file(code, "stopped", partial, one_line(exc))
        raise CliError(one_line(exc), code) from None
    finally:
        display.stop()
        source.close()
        if report is not None:
            report.close()
    if progress == "rich":
        out.print()  # a blank line between the finished bar and the summary
    print_summary(out, result)
    print_failures(out, result, errors_path=report_path)
    code = EXIT_OK if result.ok else EXIT_FAILED
    summary_file(code, "complete", result, None)
    return ImportRun(code, "complete", result, report_rows=report.count if report else 0)


def _again_hint(journal: str | os.PathLike[str] | None) -> str:
    how = f"the journal {os.fspath(journal)} lists" if journal is not None else "the server has"
    return f"Run the same command again to finish: rows {how} are skipped."
