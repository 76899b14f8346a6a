"""What every command shares: exit statuses, the masked token, settings, running async code.

Exit statuses (SPEC section 3): 0 every row succeeded or was skipped; 1 some rows (or the
one request of ``list``/``add``) failed; 2 usage or configuration error; 3 a fatal API
error stopped the run (401, 403, unknown instance, quota exhausted); 4 the API could not
be reached; 130 interrupted (SIGINT); 143 stopped by SIGTERM.

One exit path: every command ends through :class:`CliError` (a message and its status),
:func:`finish` (a status alone), or :func:`run_async`, which installs the one handler for
SIGINT and SIGTERM and maps a :class:`LosantError` to its status in :func:`exit_code_for`.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import attrs
import click

from .. import _early, _schema
from .._runtime import run
from ..bulk import check_journal_path
from ..client import DEFAULT_URL, Client
from ..errors import (
    ClientClosedError,
    ForbiddenError,
    LosantError,
    NotFoundError,
    RateLimitError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from ..report import ErrorReportWriter

__all__ = [
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "GlobalOptions",
    "Secret",
    "Stop",
    "cli_error",
    "cli_wording",
    "current_stop",
    "exit_code_for",
    "fail",
    "finish",
    "instance_option",
    "one_line",
    "open_error_report",
    "run_async",
    "run_file_command",
    "say_report_rows",
    "unwritable",
    "write_failed_row",
]

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_FATAL: Final = 3
EXIT_UNREACHABLE: Final = 4
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

#: The exit statuses, for ``--help`` and the README (a test keeps the three in step).
EXIT_STATUSES: Final[dict[int, str]] = {
    EXIT_OK: "every row was created or skipped",
    EXIT_FAILED: "some rows failed",
    EXIT_USAGE: "usage or configuration error (bad option, unreadable file, refused journal)",
    EXIT_FATAL: "a fatal API error stopped the run (401, 403, unknown instance, quota exhausted)",
    EXIT_UNREACHABLE: "the API could not be reached (connection refused, DNS, timeouts)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
    EXIT_TERMINATED: "stopped by SIGTERM",
}

MASK: Final = "***"


class Secret:
    """A string that never shows itself: ``str``, ``repr`` and formatting give ``***``.

    Click puts parameter values into error messages and ``-v`` logging may print settings;
    wrapping the token at the moment click reads it means neither can leak it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it (the client's header)."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


if TYPE_CHECKING:  # click >= 8.2 types ParamType as a generic; older click cannot subscript it
    _SecretParam = click.ParamType[Any]
    _StrParam = click.ParamType[str]
else:
    _SecretParam = _StrParam = click.ParamType


class SecretType(_SecretParam):
    """A click type that wraps the value in :class:`Secret` (and never echoes it)."""

    name = "token"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, Secret):
            return value
        if not isinstance(value, str):  # pragma: no cover - click always passes strings
            self.fail("the access token must be a string", param, ctx)
        stripped = value.strip()
        return Secret(stripped) if stripped else None


class ObjectIdType(_StrParam):
    """A 24-hex-digit ObjectId (an instance or user id), checked before any request."""

    name = "id"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = value.strip() if isinstance(value, str) else value
        try:
            return _schema.check_object_id(text, self.what)
        except ValidationError as exc:
            self.fail(exc.message, param, ctx)


class CliError(click.ClickException):
    """A one-line error (``Error: ...`` on stderr) that ends the command with its status.

    The one exception type of the command line's exit path: ``exit_code`` is 2 (usage)
    unless given.
    """

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        # click declares exit_code on the class; each error carries its own status.
        self.exit_code = exit_code  # type: ignore[misc]


def cli_error(message: str, exit_code: int = EXIT_USAGE) -> CliError:
    """A :class:`CliError` that exits with ``exit_code``."""
    return CliError(message, exit_code)


def fail(message: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    """End the command: ``Error: message`` on stderr, then exit with ``exit_code``."""
    raise CliError(message, exit_code)


def finish(exit_code: int) -> NoReturn:
    """End the command with ``exit_code`` (no message)."""
    raise click.exceptions.Exit(exit_code)


def exit_code_for(error: LosantError) -> int:
    """The exit status for an error that ended a command (the one place that decides).

    The error's own ``exit_status`` when the client defines it (errors.py); until then the
    same rule here: 2 invalid input, 3 fatal API error, 4 unreachable, 1 otherwise.
    """
    status = getattr(error, "exit_status", None)
    if isinstance(status, int):
        return status
    if isinstance(error, ValidationError):
        return EXIT_USAGE
    if isinstance(error, UnauthorizedError | ForbiddenError | NotFoundError | ClientClosedError):
        return EXIT_FATAL
    if isinstance(error, RateLimitError) and getattr(error, "quota_exhausted", False):
        return EXIT_FATAL
    if isinstance(error, TransportError):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class Stop:
    """How the running command was asked to stop: which signal, and the graceful stop.

    A command that can stop gracefully (``import``, ``sync``, ``remove FILE``) passes
    :meth:`event` to the engine as ``stop=``: the first SIGINT or SIGTERM sets it (nothing
    new is read or sent; the requests in flight finish and are counted). Without one, the
    first signal cancels the command; a second signal always cancels it at once.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self.graceful: asyncio.Event | None = None

    def event(self) -> asyncio.Event:
        """The event the first signal sets (created on first use, in the running loop)."""
        if self.graceful is None:
            self.graceful = asyncio.Event()
            if self.signal is not None:
                self.graceful.set()
        return self.graceful

    @property
    def requested(self) -> bool:
        """True once a signal asked the command to stop."""
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """143 after SIGTERM, else 130."""
        return _early.status(self.signal or signal.SIGINT)

    @property
    def word(self) -> str:
        return _early.word(self.signal or signal.SIGINT)


_STOP: Final[contextvars.ContextVar[Stop]] = contextvars.ContextVar("asyncmembers_stop")


def current_stop() -> Stop:
    """The running command's :class:`Stop` (a fresh one outside :func:`run_async`)."""
    try:
        return _STOP.get()
    except LookupError:
        return Stop()


async def _guarded(coro: Coroutine[Any, Any, T], stop: Stop, graceful: bool) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed: list[signal.Signals] = []
    if graceful:
        stop.event()  # a signal before the engine starts still stops it gracefully

    def on_signal(sig: signal.Signals) -> None:
        first = stop.signal is None
        if first:
            stop.signal = sig
        if first and stop.graceful is not None:
            stop.graceful.set()  # the engine stops gracefully
        elif task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread (tests), or a platform without it
        installed.append(sig)
    early = _early.take()  # a signal while the command line was still loading
    if early is not None:
        on_signal(early)
    token = _STOP.set(stop)
    try:
        return await coro
    finally:
        _STOP.reset(token)
        for sig in installed:
            loop.remove_signal_handler(sig)


_WS = re.compile(r"\s*[\r\n]+\s*")
#: Library hints reworded for the command line (the library names its keyword arguments).
_CLI_WORDING: Final = (
    ("pass auth_token= or set LOSANT_API_TOKEN", "pass --token or set LOSANT_API_TOKEN"),
    ("lower the concurrency or set a max rate", "lower --concurrency or set --max-rate"),
    ("allow_insecure_http=True", "--allow-insecure-http"),
    ("give the format (csv, jsonl or json)", "use --format csv|jsonl|json"),
    ("use csv, jsonl or json", "use --format csv|jsonl|json"),
    ("email_column=", "--email-column"),
    ("user_id_column=", "--user-id-column"),
    ("role_column=", "--role-column"),
    ("default_role=", "--default-role"),
    ("(e.g. encoding='cp1252')", "(e.g. --encoding cp1252)"),
    ("default_role must be", "--default-role must be"),
)


#: The sync's removal guard names its keyword and the option; the command line, the option.
_MAX_REMOVALS: Final = (
    (re.compile(r"max_removals=(\d+) \(--max-removals \1\)"), r"--max-removals \1"),
    (re.compile(r" \(max_removals=None\)"), " (the default without --max-removals)"),
    (re.compile(r"max_removals=(\d+)"), r"--max-removals \1"),
)


def cli_wording(text: str) -> str:
    """A library message reworded for the command line (options instead of keywords)."""
    for library, cli in _CLI_WORDING:
        text = text.replace(library, cli)
    if "max_removals" in text:
        for pattern, option in _MAX_REMOVALS:
            text = pattern.sub(option, text)
    return text


def one_line(error: BaseException) -> str:
    """An error as one line (the message, with any line breaks folded)."""
    return _WS.sub(" ", cli_wording(str(error) or type(error).__name__)).strip()


#: The command-line option behind each ``Client`` argument a ValidationError names.
_CLIENT_OPTIONS = {
    "auth_token": "--token (or LOSANT_API_TOKEN)",
    "url": "--url",
    "allow_insecure_http": "--allow-insecure-http",
}


@attrs.define
class GlobalOptions:
    """The group's options, shared by the commands that talk to an API."""

    url: str = DEFAULT_URL
    token: Secret | None = None
    losantdomain: str | None = None
    verbose: int = 0
    allow_insecure_http: bool = False

    def merged(
        self, url: str | None, token: Secret | None, losantdomain: str | None
    ) -> GlobalOptions:
        """These options, overridden by the same options given after the command name."""
        return attrs.evolve(
            self,
            url=url if url is not None else self.url,
            token=token if token is not None else self.token,
            losantdomain=losantdomain if losantdomain is not None else self.losantdomain,
        )

    def client(self) -> Client:
        """A :class:`Client` for these options; exit 2 without a token or with a bad URL."""
        if self.token is None:
            fail(
                "no access token: pass --token or set LOSANT_API_TOKEN "
                "(create one in Losant under Account > API Tokens)"
            )
        try:
            return Client(
                auth_token=self.token.reveal(),
                url=self.url,
                allow_insecure_http=self.allow_insecure_http,
            )
        except ValidationError as exc:
            # Name the option the user must fix: the token's own check (a line break
            # pasted with it) is not the URL's fault.
            option = _CLIENT_OPTIONS.get(exc.field or "", "--url")
            fail(f"{option}: {one_line(exc)}")


def run_async(coro: Coroutine[Any, Any, T], *, graceful: bool = False) -> T:
    """Run a command's coroutine under the SIGINT/SIGTERM handler; map errors to statuses.

    A :class:`LosantError` escaping the coroutine is shown as ``Error: <one line>`` (never
    a traceback) and exits per :func:`exit_code_for`; a signal that cancelled the command
    exits 130 (SIGINT) or 143 (SIGTERM). With ``graceful`` the coroutine passes
    :meth:`Stop.event` to its engine, and the first signal, even one that came while the
    command line was loading, sets it instead of cancelling.
    """
    stop = Stop()
    try:
        return run(_guarded(coro, stop, graceful))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if stop.signal is None:
            stop.signal = signal.SIGINT
        click.echo(f"{stop.word}.", err=True)
        finish(stop.exit_code)
    except LosantError as exc:
        raise CliError(one_line(exc), exit_code_for(exc)) from None


def is_terminal(stream: Any = None) -> bool:
    """True when ``stream`` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


#: ``--instance ID``: every command that talks to one instance takes it, validated as an
#: ObjectId before any request.
instance_option = click.option(
    "--instance",
    "instance_id",
    required=True,
    envvar="LOSANT_INSTANCE_ID",
    show_envvar=True,
    type=ObjectIdType("instanceId"),
    metavar="ID",
    help="The instance's ID (24 hex digits).",
)


def open_error_report(
    columns: Any,
    *,
    journal: str | os.PathLike[str] | None,
    errors: str | os.PathLike[str] | None,
    summary_json: str | None,
    source_path: str | os.PathLike[str] | None,
    on_refusal: Callable[[], None] = lambda: None,
) -> ErrorReportWriter | None:
    """Check the journal is none of the run's other files, then open the ``--errors`` report.

    In that order, before anything is written: creating the report or the summary file
    would overwrite a journal given the same path. A refusal calls ``on_refusal`` (close
    the input) and raises :class:`CliError`: the journal's refusal with its own exit
    status, an unwritable report with 2.
    """
    if journal is not None:
        try:
            check_journal_path(journal, (source_path, errors, summary_json))
        except LosantError as exc:
            on_refusal()
            raise CliError(one_line(exc), exit_code_for(exc)) from None
    if summary_json is not None:
        problem = unwritable(summary_json)
        if problem is not None:
            on_refusal()
            raise CliError(f"--summary-json: cannot write {summary_json}: {problem}", EXIT_USAGE)
    if errors is None:
        return None
    try:
        return ErrorReportWriter(errors, columns=columns)
    except OSError as exc:
        on_refusal()
        raise CliError(
            f"--errors: cannot write {os.fspath(errors)}: {exc.strerror or exc}", EXIT_USAGE
        ) from None


def write_failed_row(
    report: ErrorReportWriter, path: str | os.PathLike[str] | None, row: object, error: Exception
) -> None:
    """Write one failed row to the ``--errors`` report; a write that fails (a full disk)
    stops the run as a :class:`LosantError` naming the report (from ``on_outcome``, the
    engine stops cleanly and raises it with the partial result)."""
    try:
        report.write(row, error)
    except OSError as exc:
        raise LosantError(
            f"cannot write the error report {os.fspath(path) if path else ''}: "
            f"{exc.strerror or exc}; free space or choose another --errors, then run the "
            "same command again"
        ) from exc


def unwritable(path: str | os.PathLike[str]) -> str | None:
    """Why a file could not be written at ``path`` later, or None (it is not created now)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "it is a directory"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "permission denied"
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        return f"no directory {parent}"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"permission denied in {parent}"


def run_file_command(go: Coroutine[Any, Any, int], source: Any) -> NoReturn:
    """Run a file command's coroutine (:func:`run_async`), close its input, exit with its
    status."""
    try:
        code = run_async(go, graceful=True)
    finally:
        source.close()
    finish(code)


def say_report_rows(errors: str | os.PathLike[str] | None, rows: int) -> None:
    """Tell on stderr how many failed rows went to the ``--errors`` report, if any."""
    if errors is not None and rows:
        click.echo(
            f"{rows:,} failed row{'s' if rows != 1 else ''} written to {os.fspath(errors)}",
            err=True,
        )
