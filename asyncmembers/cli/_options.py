"""Options shared by the commands that read a member file and run the bulk engine.

Defined once here so ``import`` (and the commands that will join it: ``sync``,
``remove FILE``) take the same spelling, help and checks.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from .. import _early
from ..sources import SourceError, count_rows, open_source
from ._common import fail, one_line
from ._threaded import InputRows, ThreadedRows, can_block, detached_stdin

__all__ = [
    "RunOptions",
    "SourceOptions",
    "check_distinct_paths",
    "run_options",
    "run_options_no_journal",
    "source_options",
]

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class SourceOptions:
    """How to read the member file: format, encoding, delimiter, columns, default role."""

    fmt: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    email_column: str | None = None
    user_id_column: str | None = None
    role_column: str | None = None
    default_role: str | None = None

    def open(self, file: str) -> InputRows:
        """Open ``file`` (``-`` for stdin); a file that cannot be read ends with exit 2."""
        if file == "-" and "stdin" in _early.closed_at_start:
            fail("-: cannot read standard input: it was closed when the command started")
        # Input that can wait for a producer (a pipe, a FIFO) is read in a thread of its
        # own, and a signal while its first bytes are awaited ends the command at once.
        blocking = can_block(file)
        stdin = detached_stdin() if blocking and file == "-" else None
        try:
            with _early.interruptible() if blocking else contextlib.nullcontext():
                source = open_source(
                    file,
                    format=self.fmt,
                    encoding=self.encoding,
                    delimiter=self.delimiter,
                    email_column=self.email_column,
                    user_id_column=self.user_id_column,
                    role_column=self.role_column,
                    default_role=self.default_role,
                    stdin=stdin,
                    name="<stdin>" if stdin is not None else None,
                )
        except BaseException as exc:
            if stdin is not None:
                stdin.close()
            if isinstance(exc, SourceError):
                fail(one_line(exc))
            raise
        return ThreadedRows(source, owned=stdin) if blocking else source

    def estimate(self, file: str) -> int | None:
        """The row count estimate for the progress bar (``None`` when unknown)."""
        return None if file == "-" else count_rows(file, format=self.fmt)


def source_options(func: F) -> F:
    """``--format --encoding --delimiter --email-column --user-id-column --role-column
    --default-role``, passed to the command as ``source: SourceOptions``."""

    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["csv", "jsonl", "json"], case_sensitive=False),
        help="File format. Default: from the extension (.csv/.tsv, .jsonl/.ndjson, .json); "
        "for - it is sniffed from the first character.",
    )
    @click.option(
        "--encoding",
        metavar="CODEC",
        help="Text encoding, e.g. cp1252, latin-1, utf-16. Default: UTF-8; a byte order "
        "mark (UTF-8, UTF-16, UTF-32) is always obeyed.",
    )
    @click.option(
        "--delimiter",
        metavar="CHAR",
        help="CSV delimiter (',' ';' '|' or 'tab'). Default: sniffed from the header line.",
    )
    @click.option(
        "--email-column",
        metavar="NAME",
        help="The column (or JSON key) holding the email, if not a recognised name.",
    )
    @click.option(
        "--user-id-column",
        metavar="NAME",
        help="The column (or JSON key) holding the Losant userId, if not a recognised name.",
    )
    @click.option(
        "--role-column",
        metavar="NAME",
        help="The column (or JSON key) holding the role, if not a recognised name.",
    )
    @click.option(
        "--default-role",
        type=click.Choice(["admin", "view"], case_sensitive=False),
        help="Role for rows without one: when there is no role column, and for blank cells.",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        fmt: str | None,
        encoding: str | None,
        delimiter: str | None,
        email_column: str | None,
        user_id_column: str | None,
        role_column: str | None,
        default_role: str | None,
        **kwargs: Any,
    ) -> Any:
        source = SourceOptions(
            fmt=fmt,
            encoding=encoding,
            delimiter=delimiter,
            email_column=email_column,
            user_id_column=user_id_column,
            role_column=role_column,
            default_role=default_role.lower() if default_role else None,
        )
        return func(*args, source=source, **kwargs)

    return wrapper  # type: ignore[return-value]


@attrs.frozen
class RunOptions:
    """How to run the engine and report: concurrency, rate, dry run, files, progress."""

    concurrency: int = 16
    max_rate: float | None = None
    dry_run: bool = False
    errors: str | None = None
    journal: str | None = None
    summary_json: str | None = None
    no_progress: bool = False


def _run_options(func: F, *, journal_option: bool) -> F:
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=16,
        show_default=True,
        metavar="N",
        help="Requests in flight at once.",
    )
    @click.option(
        "--max-rate",
        type=click.FloatRange(min=0, min_open=True),
        metavar="R",
        help="At most R requests per second. Without it the rate adapts to the server's 429s.",
    )
    @click.option("--dry-run", is_flag=True, help="Validate and plan; change nothing.")
    @click.option(
        "--errors",
        "errors_path",
        type=click.Path(dir_okay=False),
        metavar="PATH",
        help="Write failed rows to this CSV as they happen: the original columns, then "
        "line, error_type, status, message. Fix it and import it again.",
    )
    @click.option(
        "--summary-json",
        type=click.Path(dir_okay=False),
        metavar="PATH",
        help="Write the result as JSON here (counts, failures by type, elapsed, requests, "
        "retries, exit status), also when the run is stopped.",
    )
    @click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        journal: str | None = None,
        concurrency: int,
        max_rate: float | None,
        dry_run: bool,
        errors_path: str | None,
        summary_json: str | None,
        no_progress: bool,
        **kwargs: Any,
    ) -> Any:
        for name, value in (
            ("--errors", errors_path),
            ("--journal", journal),
            ("--summary-json", summary_json),
        ):
            if value == "-":
                raise click.UsageError(f"{name} needs a file path, not -")
        file = kwargs.get("file")
        check_distinct_paths(
            ("FILE", file if isinstance(file, str) and file != "-" else None),
            ("--errors", errors_path),
            ("--journal", journal),
            ("--summary-json", summary_json),
        )
        run = RunOptions(
            concurrency=concurrency,
            max_rate=max_rate,
            dry_run=dry_run,
            errors=errors_path,
            journal=journal,
            summary_json=summary_json,
            no_progress=no_progress,
        )
        return func(*args, run=run, **kwargs)

    if journal_option:
        wrapper = click.option(
            "--journal",
            type=click.Path(dir_okay=False),
            metavar="PATH",
            help="Record each row's outcome here; running the same command again resumes, "
            "skipping rows already done.",
        )(wrapper)
    return wrapper  # type: ignore[return-value]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)  # the same file by any name: a symlink, a hard link
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)  # one of them does not exist yet


def check_distinct_paths(*named: tuple[str, str | None]) -> None:
    """Refuse (exit 2) when two of the run's files are one file, before any is opened.

    An output that is the input would truncate it (the error report even reads its own
    rows back through the input); two outputs on one path overwrite each other (the
    summary erases the failed rows, or the journal). Compared as files, so a symlink or
    another spelling of the same path is caught too.
    """
    given = [(name, path) for name, path in named if path is not None]
    for i, (name, path) in enumerate(given):
        for other_name, other in given[:i]:
            if _same_file(path, other):
                raise click.BadParameter(
                    f"{path} is the same file as {other_name} {other}; each of FILE, --errors, "
                    "--journal and --summary-json needs a file of its own (nothing was "
                    "written)",
                    param_hint=f"'{name}'",
                )


def run_options(func: F) -> F:
    """``--concurrency --max-rate --dry-run --errors --journal --summary-json
    --no-progress``, passed to the command as ``run: RunOptions``."""
    return _run_options(func, journal_option=True)


def run_options_no_journal(func: F) -> F:
    """:func:`run_options` without ``--journal`` (``remove``: a re-run needs none)."""
    return _run_options(func, journal_option=False)
