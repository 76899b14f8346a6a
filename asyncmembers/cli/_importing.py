"""Run one bulk import with progress, an error report and a summary (``import`` and ``demo``).

Only wiring: the rows come from :func:`asyncmembers.sources.open_source`, the work is
:func:`asyncmembers.bulk.bulk_import`, failures are written by
:class:`asyncmembers.report.ErrorReportWriter` as they happen.
"""

from __future__ import annotations

import asyncio
import os

import attrs

from ..bulk import BulkResult, Outcome, bulk_import
from ..client import Client
from ..errors import LosantError
from ..report import ErrorReportWriter
from ..sources import Source
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    cli_error,
    exit_code_for,
    one_line,
)
from ._output import (
    ProgressMode,
    Summary,
    Tally,
    make_progress,
    out_console,
    print_failures,
    print_summary,
)

__all__ = ["ImportRun", "run_import"]


@attrs.define
class ImportRun:
    """How an import ended: its exit status, the result (if it finished) and the tally."""

    exit_code: int
    tally: Tally
    result: BulkResult | None = None
    report_rows: int = 0


async def run_import(
    client: Client,
    source: Source,
    *,
    instance_id: str,
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    errors: str | os.PathLike[str] | None = None,
    losantdomain: str | None = None,
    progress: ProgressMode = "plain",
    total: int | None = None,
    label: str = "Importing",
) -> ImportRun:
    """Import ``source`` and print the summary; return how it ended.

    Ctrl-C (the task being cancelled) lets ``bulk_import`` stop its workers and close the
    journal, then prints the partial summary and ends with 130. A fatal API error or a file
    that turns unreadable part-way prints the partial summary, then raises
    :class:`CliError` with the error's one line and exit status (3 or 2).
    """
    tally = Tally()
    report: ErrorReportWriter | None = None
    if errors is not None:
        try:
            report = ErrorReportWriter(errors, columns=source.columns)
        except OSError as exc:
            source.close()
            raise cli_error(
                f"--errors: cannot write {os.fspath(errors)}: {exc.strerror or exc}", EXIT_USAGE
            ) from None

    def on_outcome(outcome: Outcome) -> None:
        tally.observe(outcome)
        if report is not None and outcome.kind == "failed" and outcome.error is not None:
            report.write(outcome.member, outcome.error)

    display = make_progress(progress, tally, total=total, label=label)
    out = out_console()
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
        )
    except asyncio.CancelledError:
        # Ctrl-C: asyncio.run cancelled this task. bulk_import has stopped its workers and
        # closed the journal; report what was done and end normally with 130.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        display.stop()
        print_summary(out, Summary.from_tally(tally, dry_run=dry_run, status="interrupted"))
        how = f"the journal {os.fspath(journal)} lists" if journal is not None else "the server has"
        out.print(
            f"Interrupted after {tally.total:,} rows. Run the same command again to finish: "
            f"rows {how} are skipped.",
            highlight=False,
        )
        return ImportRun(EXIT_INTERRUPTED, tally, report_rows=report.count if report else 0)
    except LosantError as exc:
        display.stop()
        partial = exc.result
        if partial is not None and partial.total:
            print_summary(out, Summary.from_result(partial, status="stopped"))
        raise cli_error(one_line(exc), exit_code_for(exc)) from None
    finally:
        display.stop()
        source.close()
        if report is not None:
            report.close()
    if progress == "rich":
        out.print()  # a blank line between the finished bar and the summary
    print_summary(out, Summary.from_result(result))
    print_failures(out, result.failures)
    return ImportRun(
        EXIT_OK if result.ok else EXIT_FAILED,
        tally,
        result,
        report_rows=report.count if report else 0,
    )
