"""What every command shares: exit statuses, the masked token, settings, running async code.

Exit statuses (SPEC section 3): 0 every row succeeded or was skipped; 1 some rows (or the
one request of ``list``/``add``) failed; 2 usage or configuration error; 3 a fatal API
error stopped the run (401, 403, unknown instance); 130 interrupted.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import attrs
import click

from .. import _schema
from .._runtime import run
from ..client import DEFAULT_URL, Client
from ..errors import (
    ForbiddenError,
    LosantError,
    NotFoundError,
    UnauthorizedError,
    ValidationError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "GlobalOptions",
    "Secret",
    "cli_error",
    "exit_code_for",
    "fail",
    "finish",
    "instance_option",
    "one_line",
    "run_async",
]

T = TypeVar("T")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_FATAL: Final = 3
EXIT_INTERRUPTED: Final = 130

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
    """A one-line error (``Error: ...`` on stderr) that ends the command with exit status 2.

    Subclasses carry the other statuses; :func:`cli_error` picks the class for a status.
    """

    exit_code = EXIT_USAGE


class _FailedError(CliError):
    exit_code = EXIT_FAILED


class _FatalError(CliError):
    exit_code = EXIT_FATAL


_ERROR_CLASSES: Final[dict[int, type[CliError]]] = {
    EXIT_FAILED: _FailedError,
    EXIT_USAGE: CliError,
    EXIT_FATAL: _FatalError,
}


def cli_error(message: str, exit_code: int = EXIT_USAGE) -> CliError:
    """A :class:`CliError` that exits with ``exit_code`` (1, 2 or 3)."""
    return _ERROR_CLASSES.get(exit_code, _FailedError)(message)


def fail(message: str, exit_code: int = EXIT_USAGE) -> NoReturn:
    """End the command: ``Error: message`` on stderr, then exit with ``exit_code``."""
    raise cli_error(message, exit_code)


def finish(exit_code: int) -> NoReturn:
    """End the command with ``exit_code`` (no message)."""
    raise click.exceptions.Exit(exit_code)


def exit_code_for(error: LosantError) -> int:
    """The exit status for an error that ended a command."""
    if isinstance(error, ValidationError):
        return EXIT_USAGE
    if isinstance(error, UnauthorizedError | ForbiddenError | NotFoundError):
        return EXIT_FATAL
    return EXIT_FAILED


_WS = re.compile(r"\s*[\r\n]+\s*")
#: Library hints reworded for the command line (the library names its keyword arguments).
_CLI_WORDING: Final = (
    ("pass auth_token= or set LOSANT_API_TOKEN", "pass --token or set LOSANT_API_TOKEN"),
    ("lower the concurrency or set a max rate", "lower --concurrency or set --max-rate"),
    ("allow_insecure_http=True", "--allow-insecure-http"),
)


def one_line(error: BaseException) -> str:
    """An error as one line (the message, with any line breaks folded)."""
    text = str(error) or type(error).__name__
    for library, cli in _CLI_WORDING:
        text = text.replace(library, cli)
    return _WS.sub(" ", text).strip()


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
            fail(f"--url: {one_line(exc)}")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine and return its value; map errors to one line and a status.

    A :class:`LosantError` escaping the coroutine is shown as ``Error: <one line>`` (never
    a traceback) and exits per :func:`exit_code_for`; Ctrl-C exits 130.
    """
    try:
        return run(coro)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        finish(EXIT_INTERRUPTED)
    except LosantError as exc:
        raise cli_error(one_line(exc), exit_code_for(exc)) from None


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
    type=ObjectIdType("instanceId"),
    metavar="ID",
    help="The instance's ID (24 hex digits).",
)
