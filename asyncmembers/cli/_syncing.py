"""Run one sync with its plan, progress, an error report and a summary (``sync``, ``demo``).

Only wiring, like :mod:`._importing`: the work is :func:`asyncmembers.bulk.sync_members`,
which reads the instance and the whole list once, calls ``on_plan`` (printed here) before
any change, checks the removal guard, then applies. The summary, ``--summary-json`` and the
exit status read the one :class:`SyncResult`.

Stopping: the first SIGINT or SIGTERM sets the engine's ``stop`` event. Before the plan is
made, the sync stops with nothing changed (the engine never applies a list read only in
part, which would make a prune remove members the unread rows name); after it, the
requests in flight finish (their failures still reach the report) and the partial summary
is printed, exit 130 or 143. A second signal cancels at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import attrs

from ..bulk import (
    Outcome,
    Progress,
    StoppedError,
    SyncPlan,
    SyncResult,
    sync_members,
)
from ..client import Client
from ..errors import LosantError, ValidationError
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
    print_plan,
    print_summary,
    summary_writer,
)
from ._threaded import InputRows

__all__ = ["SyncRun", "removal_report_row", "run_sync"]


@attrs.define
class SyncRun:
    """How a sync ended: exit status, status (complete, planned, interrupted), the result."""

    exit_code: int
    status: str
    result: SyncResult | None = None
    plan: SyncPlan | None = None
    report_rows: int = 0


def removal_report_row(member: Mapping[str, Any]) -> dict[str, Any]:
    """A member a sync failed to remove, as an error report row.

    Its identity goes to the ``extra`` column only (with ``"action": "remove"``), never to
    the email/userId/role cells: importing or syncing the report must not add it back.
    """
    return {"action": "remove", "member": dict(member)}


async def run_sync(
    client: Client,
    source: InputRows,
    *,
    instance_id: str,
    prune: bool = False,
    max_removals: int | None = None,
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    errors: str | os.PathLike[str] | None = None,
    summary_json: str | None = None,
    losantdomain: str | None = None,
    progress: ProgressMode = "plain",
    source_path: str | os.PathLike[str] | None = None,
    label: str = "Syncing",
) -> SyncRun:
    """Sync the instance to ``source``: print the plan, apply it, print the summary.

    A fatal API error, the removal guard or a refused journal prints what is known and
    raises :class:`CliError` with the error's one line and exit status (2 for the guard).
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

    live = Progress()
    out = out_console()
    display = make_progress(progress, live, label=label, noun="sync")
    seen_plan: list[SyncPlan] = []

    def on_plan(plan: SyncPlan) -> None:
        display.stop()
        print_plan(out, plan, prune=prune)
        out.print()
        seen_plan.append(plan)
        if not dry_run and not stop.requested:
            display.start()  # the engine sets live.total from the plan

    def on_outcome(outcome: Outcome) -> None:
        if report is not None and outcome.kind == "failed" and outcome.error is not None:
            member = outcome.member
            if isinstance(member, Mapping):
                member = removal_report_row(member)
            write_failed_row(report, errors, member, outcome.error)

    summary_file = summary_writer(summary_json, live, "sync")

    try:
        result = await sync_members(
            client,
            instanceId=instance_id,
            members=source,
            prune=prune,
            max_removals=max_removals,
            dry_run=dry_run,
            concurrency=concurrency,
            max_rate=max_rate,
            journal=journal,
            on_outcome=on_outcome,
            losantdomain=losantdomain,
            progress=live,
            protect=(source_path, errors, summary_json),
            on_plan=on_plan,
            stop=stop.event(),
        )
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        display.stop(complete=False)
        if seen_plan:
            out.print(
                f"{stop.word} again: stopped at once after {live.done:,} rows. "
                "Run the same command again to finish: its plan is made from the "
                "instance as it is then.",
                highlight=False,
            )
        else:
            out.print(f"{stop.word} before the plan was made: nothing was changed.")
        summary_file(stop.exit_code, "interrupted", None, stop.word.lower())
        return SyncRun(stop.exit_code, "interrupted", report_rows=report.count if report else 0)
    except StoppedError as exc:
        display.stop(complete=False)
        partial = exc.result if isinstance(exc.result, SyncResult) else None
        if not seen_plan:
            out.print(
                f"{stop.word} before the plan was made: nothing was changed. Run the same "
                "command again to sync.",
                highlight=False,
            )
        else:
            if partial is not None:
                print_summary(out, partial, status="interrupted")
                print_failures(out, partial, errors_path=_fspath(errors))
            out.print(
                f"{stop.word}. Run the same command again to finish: its plan is made from "
                "the instance as it is then.",
                highlight=False,
            )
        summary_file(stop.exit_code, "interrupted", partial, None)
        return SyncRun(
            stop.exit_code,
            "interrupted",
            partial,
            seen_plan[0] if seen_plan else None,
            report.count if report else 0,
        )
    except LosantError as exc:
        display.stop(complete=False)
        partial = exc.result if isinstance(exc.result, SyncResult) else None
        code = exit_code_for(exc)
        changed = partial is not None and (partial.added or partial.updated or partial.removed)
        # The guard's refusal (a ValidationError after the plan) changed nothing: its one
        # line says all; a fatal error while applying shows what was done before it.
        if partial is not None and seen_plan and (changed or not isinstance(exc, ValidationError)):
            print_summary(out, partial, status="stopped")
        summary_file(code, "stopped", partial, one_line(exc))
        raise CliError(one_line(exc), code) from None
    finally:
        display.stop()
        source.close()
        if report is not None:
            report.close()
    if dry_run:
        out.print(
            "Dry run: nothing was changed. Run the same command without --dry-run to apply "
            "this plan.",
            highlight=False,
        )
    else:
        if progress == "rich":
            out.print()
        print_summary(out, result)
    print_failures(out, result, errors_path=_fspath(errors))
    code = EXIT_OK if result.ok else EXIT_FAILED
    summary_file(code, "complete", result, None)
    return SyncRun(
        code,
        "complete",
        result,
        seen_plan[0] if seen_plan else None,
        report.count if report else 0,
    )


def _fspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)
