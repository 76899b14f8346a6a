"""What the commands print: member tables, JSON and CSV, import progress and summary.

Results go to stdout; progress, warnings and errors to stderr, so ``> file`` or ``| jq``
get only the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import re
import sys
from collections.abc import Callable
from typing import IO, Any, Final, Literal, Protocol

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..bulk import BulkResult, RemoveResult, SyncPlan, SyncResult
from ..bulk import Progress as LiveProgress
from ..models import InstanceMember, InstanceMembers, converter
from ..report import guard_cell
from ._common import CliError, cli_wording, is_terminal

__all__ = [
    "MEMBER_COLUMNS",
    "LiveCounts",
    "ProgressMode",
    "counts_text",
    "duration",
    "err_console",
    "make_progress",
    "out_console",
    "print_failures",
    "print_members_table",
    "print_plan",
    "print_summary",
    "progress_mode",
    "write_members_csv",
    "write_members_json",
    "write_summary_json",
]

#: Columns of ``list --format csv`` (wire names, so the file can be imported again).
MEMBER_COLUMNS: Final = (
    "email",
    "userId",
    "role",
    "firstName",
    "lastName",
    "twoFactorAuthEnabled",
    "ssoLinked",
    "avatarUrl",
    "instanceId",
)

ProgressMode = Literal["rich", "plain", "none"]


def progress_mode(no_progress: bool) -> ProgressMode:
    """A live bar when stderr is a terminal, plain periodic lines otherwise, or nothing."""
    if no_progress:
        return "none"
    return "rich" if is_terminal(sys.stderr) else "plain"


#: Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL: Final = 2.0
#: Seconds between redraws of the progress bar on a terminal.
RICH_INTERVAL: Final = 0.1


class _Console(Console):
    """A rich console whose reader may go away (``| head``, a closed log pipe).

    rich's default answer to a broken pipe is ``SystemExit(1)`` raised wherever the
    console was printing: inside the progress task it tore the running import down, and
    in the summary it lost ``--summary-json`` and the exit status. Here the console goes
    quiet instead, its descriptor is pointed at ``/dev/null`` (so no later write or the
    interpreter's final flush fails again), and the command goes on: what it prints is
    a view, the work and the summary file are what count.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence(self.file)


def silence(stream: IO[str]) -> None:
    """Point ``stream``'s descriptor at ``/dev/null`` (its reader went away)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def out_console() -> Console:
    """A console on the current stdout (looked up now, so test runners can capture it)."""
    return _Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    """A console on the current stderr."""
    return _Console(file=sys.stderr, highlight=False)


# -- members ---------------------------------------------------------------------------


def _wire(member: InstanceMember) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(member)
    return data


def write_members_json(members: InstanceMembers, out: IO[str]) -> None:
    """The list as the API returns it (camelCase), minus links; indented JSON."""
    data = converter.unstructure(members)
    # Always a list, as the API sends it: `.items[]` in a jq pipeline must not meet null
    # when the instance has no members (the converter leaves out empty defaults).
    data = {"items": data.pop("items", []), **data}
    json.dump(data, out, indent=2, ensure_ascii=False)
    out.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return guard_cell(str(value))


def write_members_csv(members: InstanceMembers, out: IO[str]) -> None:
    """One row per member, wire-named columns; ``import`` reads the file back as is.

    Cells that a spreadsheet would run as a formula get a leading ``'`` (see
    :func:`asyncmembers.report.guard_cell`); the importer removes it again.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MEMBER_COLUMNS)
    for member in members.items:
        data = _wire(member)
        writer.writerow([_cell(data.get(column)) for column in MEMBER_COLUMNS])


def _name(member: InstanceMember) -> str:
    return " ".join(part for part in (member.first_name, member.last_name) if part)


def _flag(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def print_members_table(
    console: Console,
    members: InstanceMembers,
    *,
    title: str | None = None,
    limit: int | None = None,
) -> None:
    """A table of members: email, user id, role, name, 2FA, SSO."""
    items = members.items if limit is None else members.items[:limit]
    count = members.count if members.count is not None else len(members.items)
    caption = f"{count} member{'s' if count != 1 else ''}"
    if limit is not None and count > len(items):
        caption = f"first {len(items)} of {caption}"
    settings = []
    if members.sort_field:
        settings.append(f"sorted by {members.sort_field} {members.sort_direction or 'asc'}")
    if members.filter_field and members.filter:
        settings.append(f"{members.filter_field} matches {members.filter!r}")
    if settings:
        caption += ", " + ", ".join(settings)
    rows = [
        {
            "Email": m.email or "",
            "User ID": m.user_id or "",
            "Role": str(getattr(m.role, "value", m.role) or ""),
            "Name": _name(m),
            "2FA": _flag(m.two_factor_auth_enabled),
            "SSO": _flag(m.sso_linked),
        }
        for m in items
    ]
    if title:
        console.print(title, style="bold", highlight=False, markup=False)
    table = Table(caption=caption, box=box.SIMPLE_HEAD, caption_justify="left", pad_edge=False)
    # Columns no member has a value for (a server that does not know names) are left out.
    columns = [
        c for c in ("Email", "User ID", "Role", "Name", "2FA", "SSO") if any(r[c] for r in rows)
    ]
    for column in columns or ["Email"]:
        table.add_column(
            column,
            style="dim" if column == "User ID" else None,
            justify="center" if column in ("2FA", "SSO") else "left",
            no_wrap=column in ("User ID", "Role"),
        )
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console.print(table)


# -- import: progress and summary, read from the engine's objects --------------------


class LiveCounts(Protocol):
    """What the progress display reads while an import runs (the engine's ``Progress``)."""

    @property
    def done(self) -> int: ...

    @property
    def total(self) -> int | None: ...

    @property
    def created(self) -> int: ...

    @property
    def updated(self) -> int: ...

    @property
    def skipped(self) -> int: ...

    @property
    def removed(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def rate(self) -> float: ...

    @property
    def eta(self) -> float | None: ...


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _kind_rows(result: Any) -> tuple[str, list[tuple[str, int, str | None]]]:
    """The summary's title and its count rows for the result of an import, sync or remove."""
    dry = result.dry_run
    if isinstance(result, SyncResult):
        return "Sync summary", [
            ("Rows read + members considered for removal", result.total, None),
            ("Would be added" if dry else "Added", result.added, "green"),
            ("Role would change" if dry else "Role changed", result.updated, None),
            ("Would be removed" if dry else "Removed", result.removed, None),
            ("Unchanged", result.unchanged, None),
        ]
    if isinstance(result, BulkResult):
        rows: list[tuple[str, int, str | None]] = [
            ("Rows read", result.total, None),
            ("Would be created" if dry else "Created", result.created, "green"),
        ]
        if result.updated:
            rows.append(("Role would change" if dry else "Role changed", result.updated, None))
        rows.append(("Skipped", result.skipped, None))
        rows += [
            (f"  {reason}", count, "dim")
            for reason, count in sorted(result.skipped_by_reason.items())
        ]
        return "Import summary", rows
    assert isinstance(result, RemoveResult)
    rows = [
        ("Rows read", result.total, None),
        ("Would be removed" if dry else "Removed", result.removed, None),
        ("Skipped", result.skipped, None),
    ]
    rows += [
        (f"  {reason}", count, "dim") for reason, count in sorted(result.skipped_by_reason.items())
    ]
    return "Remove summary", rows


def print_summary(console: Console, result: Any, *, status: str = "complete") -> None:
    """The run's summary table, read from its one result (``BulkResult``, ``SyncResult``,
    or ``remove``'s result): counts, failures by type, requests, retries, 429s, time."""
    title, rows = _kind_rows(result)
    if result.dry_run:
        title += " (dry run: nothing was changed)"
    if status != "complete":
        title += f" ({status}: partial)"
    console.print(title, style="bold", highlight=False, markup=False)
    table = Table(box=None, show_header=False, padding=(0, 0, 0, 2))
    table.add_column("what", min_width=28)
    table.add_column("rows", justify="right", min_width=8)
    for label, count, style in rows:
        if style == "green":
            table.add_row(label, f"[green]{count:,}[/]")
        else:
            table.add_row(label, f"{count:,}", style=style)
    failed = result.failed
    table.add_row("Failed", f"[red]{failed:,}[/]" if failed else "0")
    for name, count in sorted(result.failures_by_type().items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {name}", f"{count:,}", style="dim")
    table.add_row("", "")
    table.add_row("Requests", f"{result.requests:,}")
    table.add_row("Retries", f"{result.retries:,}")
    table.add_row("Rate limited (429)", f"{result.rate_limited:,}")
    table.add_row(
        "Elapsed", duration(result.elapsed) if result.elapsed >= 60 else f"{result.elapsed:.1f} s"
    )
    table.add_row("Rows/s", f"{result.rows_per_second:,.0f}")
    console.print(table)


def _who(row: object) -> str:
    """A row or a wire-form member, as ``email (userId)`` or ``line N: email``."""
    if isinstance(row, dict):
        parts = [str(row[k]) for k in ("email", "userId") if row.get(k)]
        return " ".join(parts[:1]) + (f" ({parts[1]})" if len(parts) > 1 else "")
    post = getattr(row, "to_member_post", None)
    where = getattr(row, "where", None)
    try:
        member = post() if post is not None else row
        name = getattr(member, "email", None) or getattr(member, "user_id", None) or str(row)
    except Exception:  # an invalid row is planned as failed; show it as given
        return str(row)
    return f"{where}: {name}" if isinstance(where, str) else str(name)


def print_plan(console: Console, plan: SyncPlan, *, prune: bool) -> None:
    """What a sync is about to do, before it does anything: counts and the first rows."""
    console.print("Sync plan", style="bold", highlight=False, markup=False)
    table = Table(box=None, show_header=False, padding=(0, 0, 0, 2))
    table.add_column("what", min_width=28)
    table.add_column("n", justify="right", min_width=8)
    table.add_row("Current members", f"{plan.current:,}")
    table.add_row("To add", f"{plan.add:,}")
    table.add_row("To change role", f"{plan.update:,}")
    table.add_row("To remove" if prune else "To remove (no --prune: none)", f"{plan.remove:,}")
    table.add_row("Unchanged", f"{plan.unchanged:,}")
    table.add_row("Invalid rows", f"{plan.failed - plan.withheld:,}")
    if plan.withheld:
        table.add_row("Not removed (see errors)", f"{plan.withheld:,}")
    console.print(table)
    for kind, label in (("add", "add"), ("update", "change role"), ("remove", "remove")):
        sample = plan.samples.get(kind) or []
        if not sample:
            continue
        total = {"add": plan.add, "update": plan.update, "remove": plan.remove}[kind]
        more = f" (first {len(sample)} of {total:,})" if total > len(sample) else ""
        console.print(f"  {label}{more}:", highlight=False, markup=False)
        for row in sample:
            text = _who(row)
            if kind == "remove" and isinstance(row, dict) and row.get("role"):
                text += f", role {row['role']}"
            elif kind != "remove":
                with contextlib.suppress(Exception):  # a sample row is only shown
                    text += f" -> {row.to_member_post().role.value}"
            console.print(f"    {text}", highlight=False, markup=False)


_LINE_PREFIX = re.compile(r"^(?:line|element) \d+: ")


def print_failures(
    console: Console,
    result: BulkResult | SyncResult | Any,
    *,
    errors_path: str | None = None,
    limit: int = 10,
) -> None:
    """The first ``limit`` failed rows: where, what type of error, and why.

    When more rows failed than are shown, the caption says where the rest are: the
    ``--errors`` report, or a hint to pass ``--errors PATH``.
    """
    if not result.failed:
        return
    shown = sorted(result.failures, key=lambda f: f.index)[:limit]
    more = result.failed - len(shown)
    caption = None
    if more and errors_path is not None:
        caption = f"and {more:,} more: every failed row is in {errors_path}"
    elif more:
        caption = f"and {more:,} more: pass --errors PATH to write every failed row to a CSV"
    title = "Failed rows" if not more else f"First {len(shown)} failed rows (sorted by line)"
    console.print()
    console.print(title, style="bold", highlight=False, markup=False)
    table = Table(box=box.SIMPLE_HEAD, caption=caption, caption_justify="left", pad_edge=False)
    table.add_column("Line", justify="right")
    table.add_column("Error", no_wrap=True)
    table.add_column("Message")
    for failure in shown:
        line = getattr(failure.member, "line", None)
        element = getattr(failure.member, "element", None)
        if isinstance(line, int):
            where = str(line)
        elif isinstance(element, int):
            where = f"[{element}]"
        elif isinstance(failure.member, dict):
            where = "remove"  # a member the sync tried to remove: not a row of the file
        else:
            where = f"#{failure.index + 1}"
        message = cli_wording(_LINE_PREFIX.sub("", failure.error.message))
        if isinstance(failure.member, dict):
            message = f"{_who(failure.member)}: {message}"
        table.add_row(where, type(failure.error).__name__, message)
    console.print(table)


def write_summary_json(
    path: str,
    *,
    exit_status: int,
    status: str,
    result: Any | None,
    error: str | None = None,
    command: str = "import",
    progress: LiveProgress | None = None,
) -> None:
    """Write the run's figures as JSON for a batch job (``--summary-json PATH``).

    ``result.to_dict()`` (counts, failures by type, elapsed, requests, retries) plus
    ``command`` (import, sync, remove), ``exit_status``, ``status`` (complete,
    interrupted, stopped) and ``error``. Without a result (a second signal cancelled the
    run), the counts of the rows accounted for are taken from ``progress``, and the
    result's other keys are there with ``null``: a batch job reads the same keys always.
    """
    data: dict[str, Any] = {
        "command": command,
        "exit_status": exit_status,
        "status": status,
        "error": error,
    }
    if result is not None:
        data.update(result.to_dict())
    elif progress is not None:
        kind = {"sync": SyncResult, "remove": RemoveResult}.get(command, BulkResult)
        data.update(dict.fromkeys(kind().to_dict()))
        data.update(_progress_counts(progress, command))
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.write("\n")
    except OSError as exc:  # checked before the run; the disk can still fill up
        raise CliError(
            f"--summary-json: cannot write {path}: {exc.strerror or exc}", exit_status or 2
        ) from None


def summary_writer(
    path: str | None, progress: LiveProgress, command: str = "import"
) -> Callable[[int, str, Any | None, str | None], None]:
    """``write(exit_status, status, result, error)`` for one run's ``--summary-json``
    (a no-op without one); without a result, the counts come from ``progress``."""

    def write(code: int, status: str, result: Any | None, error: str | None) -> None:
        if path is not None:
            write_summary_json(
                path,
                exit_status=code,
                status=status,
                result=result,
                error=error,
                command=command,
                progress=progress,
            )

    return write


def _progress_counts(progress: LiveProgress, command: str) -> dict[str, int]:
    """A result's counts, from the live progress of a run that has no result."""
    if command == "sync":
        counts = {
            "added": progress.created,
            "updated": progress.updated,
            "removed": progress.removed,
            "unchanged": progress.skipped,
        }
    elif command == "remove":
        counts = {"removed": progress.removed, "skipped": progress.skipped}
    else:
        counts = {
            "created": progress.created,
            "updated": progress.updated,
            "skipped": progress.skipped,
        }
    return {"total": progress.done, **counts, "failed": progress.failed}


class ImportProgress(Protocol):
    """Shows how an import is going, from the engine's live counts, until stopped."""

    def start(self) -> None: ...

    def stop(self, complete: bool = True) -> None: ...


class _NoProgress:
    def start(self) -> None:
        pass

    def stop(self, complete: bool = True) -> None:
        pass


class _Ticker:
    """Calls ``tick`` every ``interval`` seconds on the running loop, and once at the end."""

    interval: float

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    #: False once stopped before the run ended (a signal, a fatal error).
    complete = True

    def tick(self, final: bool = False) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self, complete: bool = True) -> None:
        """End the display; ``complete=False``: the run was cut short (the bar is not
        drawn as finished)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            self.complete = complete
            self.tick(final=True)


class _PlainProgress(_Ticker):
    """A line on stderr every few seconds (for logs and pipes), with an ETA when known."""

    interval = PLAIN_INTERVAL

    def __init__(self, live: LiveCounts, console: Console, noun: str = "import") -> None:
        super().__init__()
        self.live, self.console, self.noun = live, console, noun

    def tick(self, final: bool = False) -> None:
        if final:
            return  # the summary follows
        p = self.live
        total = p.total
        of = f"/{total:,}" if total else ""
        line = (
            f"{self.noun}: {p.done:,}{of} rows, {counts_text(p, self.noun)}, {p.rate:,.0f} rows/s"
        )
        if total and p.eta is not None:
            line += f", ETA {duration(p.eta)}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        try:
            self.console.file.flush()
        except BrokenPipeError:
            self.console.on_broken_pipe()


class _RichProgress(_Ticker):
    """A live progress bar on a terminal, with an ETA when the total is known."""

    interval = RICH_INTERVAL

    def __init__(self, live: LiveCounts, console: Console, label: str) -> None:
        super().__init__()
        self.live = live
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]:>6,.0f} rows/s"),
            TextColumn("[red]{task.fields[failed]:,} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
            auto_refresh=False,  # redrawn by our own ticker on the event loop: no thread
            transient=False,
        )
        self.label = label
        self.task: TaskID = self.progress.add_task(
            label, total=live.total, counts="", rate=0.0, failed=0, eta=""
        )

    def start(self) -> None:
        self.progress.start()
        super().start()

    def tick(self, final: bool = False) -> None:
        p = self.live
        total = p.total
        if (final and self.complete) or (total is not None and p.done > total):
            total = p.done  # the estimate was an upper bound (or low): end at 100 %
        counts = f"{p.done:,}/{total:,}" if total is not None else f"{p.done:,}"
        eta = f"ETA {duration(p.eta)}" if total and not final and p.eta is not None else ""
        self.progress.update(
            self.task,
            completed=p.done,
            total=total,
            description=self.label if self.complete else f"{self.label} (stopped)",
            counts=counts,
            rate=p.rate,
            failed=p.failed,
            eta=eta,
        )
        self.progress.refresh()
        if final:
            self.progress.stop()


def counts_text(p: LiveCounts, noun: str = "import") -> str:
    """The live counts in the words of the run: ``import``, ``sync`` or ``remove``."""
    if noun == "sync":  # the engine's Progress counts added as created, unchanged as skipped
        return (
            f"{p.created:,} added, {p.updated:,} role changed, {p.removed:,} removed, "
            f"{p.skipped:,} unchanged, {p.failed:,} failed"
        )
    if noun == "remove":
        return f"{p.removed:,} removed, {p.skipped:,} skipped, {p.failed:,} failed"
    updated = f"{p.updated:,} role changed, " if p.updated else ""
    return f"{p.created:,} created, {updated}{p.skipped:,} skipped, {p.failed:,} failed"


def make_progress(
    mode: ProgressMode, live: LiveCounts, *, label: str = "Importing", noun: str = "import"
) -> ImportProgress:
    """The progress display for ``mode``: a bar, periodic lines, or nothing."""
    if mode == "rich":
        return _RichProgress(live, err_console(), label)
    if mode == "plain":
        return _PlainProgress(live, err_console(), noun)
    return _NoProgress()
