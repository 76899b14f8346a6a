"""What the commands print: member tables, JSON and CSV, import progress and summary.

Results go to stdout; progress, warnings and errors to stderr, so ``> file`` or ``| jq``
get only the data.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any, Final, Literal, Protocol

import attrs
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..bulk import BulkResult, ItemFailure, Outcome
from ..errors import BadRequestError, LosantError, ValidationError
from ..models import InstanceMember, InstanceMembers, converter
from ..report import guard_cell
from ._common import is_terminal

__all__ = [
    "MEMBER_COLUMNS",
    "ProgressMode",
    "Summary",
    "Tally",
    "err_console",
    "failure_label",
    "make_progress",
    "out_console",
    "print_failures",
    "print_members_table",
    "print_summary",
    "progress_mode",
    "write_members_csv",
    "write_members_json",
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


def out_console() -> Console:
    """A console on the current stdout (looked up now, so test runners can capture it)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def err_console() -> Console:
    """A console on the current stderr."""
    return Console(file=sys.stderr, highlight=False)


# -- members ---------------------------------------------------------------------------


def _wire(member: InstanceMember) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(member)
    return data


def write_members_json(members: InstanceMembers, out: IO[str]) -> None:
    """The list as the API returns it (camelCase), minus links; indented JSON."""
    data = converter.unstructure(members)
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


# -- import: tally, progress, summary --------------------------------------------------


def failure_label(error: LosantError) -> str:
    """How a failure is grouped in the summary: error type and, briefly, why.

    ``ValidationError (email)``, ``BadRequestError (400 Validation)``, ``ServerError (503)``.
    """
    name = type(error).__name__
    if isinstance(error, ValidationError):
        return f"{name} ({error.field or 'row'})"
    if isinstance(error, BadRequestError) or error.status is not None:
        detail = " ".join(str(p) for p in (error.status, error.type) if p is not None)
        return f"{name} ({detail})" if detail else name
    return name


@attrs.define
class Tally:
    """Live counts of outcomes, for the progress display and a partial summary."""

    total: int = 0
    created: int = 0
    skipped: int = 0
    failed: int = 0
    retries: int = 0
    skipped_by_reason: Counter[str] = attrs.field(factory=Counter)
    failed_by_label: Counter[str] = attrs.field(factory=Counter)
    started: float = attrs.field(factory=time.perf_counter)

    def observe(self, outcome: Outcome) -> None:
        """Count one row's outcome."""
        self.total += 1
        # Outcome.retries is optional: older importers do not report it per row.
        self.retries += int(getattr(outcome, "retries", 0) or 0)
        if outcome.kind == "created":
            self.created += 1
        elif outcome.kind == "skipped":
            self.skipped += 1
            reason = outcome.reason or "skipped"
            if reason.startswith("duplicate of row"):
                reason = "duplicate in input"
            self.skipped_by_reason[reason] += 1
        else:
            self.failed += 1
            if outcome.error is not None:
                self.failed_by_label[failure_label(outcome.error)] += 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.total / elapsed if elapsed > 0 else 0.0


@attrs.define
class Summary:
    """The figures of the summary table, from a :class:`BulkResult` or a live tally."""

    total: int
    created: int
    skipped_by_reason: dict[str, int]
    failed_by_label: dict[str, int]
    elapsed: float
    retries: int | None = None
    rate_limited: int | None = None
    requests: int | None = None
    dry_run: bool = False
    status: str = "complete"

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def failed(self) -> int:
        return sum(self.failed_by_label.values())

    @classmethod
    def from_result(cls, result: BulkResult, *, status: str = "complete") -> Summary:
        labels: Counter[str] = Counter(failure_label(f.error) for f in result.failures)
        return cls(
            total=result.total,
            created=result.created,
            skipped_by_reason=dict(result.skipped_by_reason),
            failed_by_label=dict(labels.most_common()),
            elapsed=result.elapsed,
            retries=result.retries,
            rate_limited=result.rate_limited,
            requests=result.requests,
            dry_run=result.dry_run,
            status=status,
        )

    @classmethod
    def from_tally(cls, tally: Tally, *, dry_run: bool, status: str) -> Summary:
        return cls(
            total=tally.total,
            created=tally.created,
            skipped_by_reason=dict(tally.skipped_by_reason),
            failed_by_label=dict(tally.failed_by_label.most_common()),
            elapsed=tally.elapsed,
            retries=tally.retries if hasattr(Outcome, "retries") else None,
            dry_run=dry_run,
            status=status,
        )


def print_summary(console: Console, summary: Summary) -> None:
    """The import's summary table."""
    title = "Import summary"
    if summary.dry_run:
        title += " (dry run: nothing was added)"
    if summary.status != "complete":
        title += f" ({summary.status}: partial)"
    console.print(title, style="bold", highlight=False, markup=False)
    table = Table(box=None, show_header=False, padding=(0, 0, 0, 2))
    table.add_column("what", min_width=28)
    table.add_column("rows", justify="right", min_width=8)
    table.add_row("Rows read", f"{summary.total:,}")
    table.add_row(
        "Would be created" if summary.dry_run else "Created",
        f"[green]{summary.created:,}[/]",
    )
    table.add_row("Skipped", f"{summary.skipped:,}")
    for reason, count in sorted(summary.skipped_by_reason.items()):
        table.add_row(f"  {reason}", f"{count:,}", style="dim")
    failed_style = "red" if summary.failed else ""
    table.add_row("Failed", f"[{failed_style}]{summary.failed:,}[/]" if failed_style else "0")
    for label, count in summary.failed_by_label.items():
        table.add_row(f"  {label}", f"{count:,}", style="dim")
    table.add_row("", "")
    if summary.requests is not None:
        table.add_row("Requests", f"{summary.requests:,}")
    if summary.retries is not None:
        table.add_row("Retries", f"{summary.retries:,}")
    if summary.rate_limited is not None:
        table.add_row("Rate limited (429)", f"{summary.rate_limited:,}")
    table.add_row("Elapsed", f"{summary.elapsed:.1f} s")
    rate = summary.total / summary.elapsed if summary.elapsed > 0 else 0.0
    table.add_row("Rows/s", f"{rate:,.0f}")
    console.print(table)


_LINE_PREFIX = re.compile(r"^line \d+: ")


def print_failures(console: Console, failures: Sequence[ItemFailure], *, limit: int = 10) -> None:
    """The first ``limit`` failed rows: where, what type of error, and why."""
    if not failures:
        return
    shown = sorted(failures, key=lambda f: f.index)[:limit]
    more = len(failures) - len(shown)
    caption = f"and {more:,} more" if more else None
    title = "Failed rows" if not more else f"First {len(shown)} failed rows (sorted by line)"
    console.print()
    console.print(title, style="bold", highlight=False, markup=False)
    table = Table(box=box.SIMPLE_HEAD, caption=caption, caption_justify="left", pad_edge=False)
    table.add_column("Line", justify="right")
    table.add_column("Error", no_wrap=True)
    table.add_column("Message")
    for failure in shown:
        line = getattr(failure.member, "line", None)
        where = str(line) if isinstance(line, int) else f"#{failure.index + 1}"
        message = _LINE_PREFIX.sub("", failure.error.message)
        table.add_row(where, type(failure.error).__name__, message)
    console.print(table)


class ImportProgress(Protocol):
    """Shows how an import is going, from a :class:`Tally`, until stopped."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _NoProgress:
    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Ticker:
    """Calls ``tick`` every ``interval`` seconds on the running loop, and once at the end."""

    interval: float

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def tick(self, final: bool = False) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.tick()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            self.tick(final=True)


class _PlainProgress(_Ticker):
    """A line on stderr every few seconds (for logs and pipes)."""

    interval = PLAIN_INTERVAL

    def __init__(self, tally: Tally, total: int | None, console: Console) -> None:
        super().__init__()
        self.tally, self.total, self.console = tally, total, console

    def tick(self, final: bool = False) -> None:
        if final:
            return  # the summary follows
        t = self.tally
        of = f"/{self.total:,}" if self.total else ""
        line = (
            f"import: {t.total:,}{of} rows, {t.created:,} created, {t.skipped:,} skipped, "
            f"{t.failed:,} failed, {t.rate:,.0f} rows/s"
        )
        if t.retries:
            line += f", {t.retries:,} retries"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()


class _RichProgress(_Ticker):
    """A live progress bar on a terminal."""

    interval = RICH_INTERVAL

    def __init__(self, tally: Tally, total: int | None, console: Console, label: str) -> None:
        super().__init__()
        self.tally, self.total = tally, total
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>6,.0f} rows/s"),
            TextColumn("[red]{task.fields[failed]:,} failed[/]"),
            TextColumn("{task.fields[retries]}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,  # redrawn by our own ticker on the event loop: no thread
            transient=False,
        )
        self.task: TaskID = self.progress.add_task(
            label, total=total, rate=0.0, failed=0, retries=""
        )

    def start(self) -> None:
        self.progress.start()
        super().start()

    def tick(self, final: bool = False) -> None:
        t = self.tally
        total = self.total
        if final or (total is not None and t.total > total):
            total = t.total  # the estimate was an upper bound (or low): end at 100 %
        retries = f"{t.retries:,} retries" if t.retries else ""
        self.progress.update(
            self.task, completed=t.total, total=total, rate=t.rate, failed=t.failed, retries=retries
        )
        self.progress.refresh()
        if final:
            self.progress.stop()


def make_progress(
    mode: ProgressMode, tally: Tally, *, total: int | None, label: str = "Importing"
) -> ImportProgress:
    """The progress display for ``mode``: a bar, periodic lines, or nothing."""
    if mode == "rich":
        return _RichProgress(tally, total, err_console(), label)
    if mode == "plain":
        return _PlainProgress(tally, total, err_console())
    return _NoProgress()
