"""The ``asyncmembers`` click group: global options, logging, and the command table."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import __version__
from ..client import DEFAULT_URL
from ._common import EXIT_INTERRUPTED, EXIT_STATUSES, MASK, GlobalOptions, Secret, SecretType

__all__ = ["api_options", "cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS: dict[str, Any] = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
}

_URL_HELP = "Base URL of the Losant API."
_TOKEN_HELP = (
    "Losant API access token, with scope all.Instance or instanceMembers.*. "
    "Never printed or logged."
)
_DOMAIN_HELP = "Domain scope of requests (the losantdomain header); rarely needed."
_INSECURE_HELP = "Allow sending the token over plain http to a host other than this machine."
_VERBOSE_HELP = "-v: log each retry to stderr; -vv: also one line per request."
_EXIT_HELP = "\b\nExit status:\n" + "\n".join(
    f"  {code:<4}{meaning}" for code, meaning in EXIT_STATUSES.items()
)


class _Redactor(logging.Filter):
    """Replace every known secret in a log record's text with ``***``."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            for secret in self.secrets:
                text = text.replace(secret, MASK)
            record.msg, record.args = text, None
        return True


class _StderrHandler(logging.Handler):
    """Write to whatever ``sys.stderr`` is at the time (rich's live display redirects it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never break the command
            self.handleError(record)


def _level(verbose: int) -> int:
    return logging.ERROR if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG


def _setup_logging(ctx: click.Context, verbose: int) -> _Redactor:
    """Send the package's log records to stderr for the command's lifetime.

    Without ``-v`` only errors are shown (retries are counted in the summary instead of
    printed one by one); ``-v`` adds warnings and info (each retry), ``-vv`` debug (one
    line per request, from the client's session).
    """
    redactor = _Redactor()
    handler = _StderrHandler()
    handler.addFilter(redactor)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("asyncmembers")
    saved = (log.level, log.propagate)
    log.addHandler(handler)
    log.setLevel(_level(verbose))
    log.propagate = False

    def restore() -> None:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]

    ctx.call_on_close(restore)
    return redactor


class _Group(click.Group):
    """A group whose Ctrl-C exits 130 (click's own handling exits 1 with "Aborted!")."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except click.ClickException as exc:
            # A usage error quotes the value given: the token, put in the wrong option
            # (--instance, --url ...?access_token=, a FILE argument), would be printed.
            # Case-insensitively: a host name in --url is shown in lower case. (click
            # types ``message`` Final; the exception is ours to mend before it is shown.)
            message = exc.message
            for secret in _known_secrets(ctx):
                message = re.sub(re.escape(secret), MASK, message, flags=re.IGNORECASE)
            vars(exc)["message"] = message
            raise


def _known_secrets(ctx: click.Context) -> set[str]:
    """The tokens this run knows: given to the group or a command, or in the environment.
    (Not one shorter than the transport masks: "t" would blot out every message.)"""
    from .._transport import MIN_SCRUBBED_SECRET

    redactor = ctx.meta.get("asyncmembers.redactor")
    secrets = set(redactor.secrets) if isinstance(redactor, _Redactor) else set()
    if env := os.environ.get("LOSANT_API_TOKEN", "").strip():
        secrets.add(env)
    return {s for s in secrets if len(s) >= MIN_SCRUBBED_SECRET}


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS, epilog=_EXIT_HELP)
@click.option(
    "--url",
    envvar="LOSANT_API_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help=_URL_HELP,
)
@click.option(
    "--token", envvar="LOSANT_API_TOKEN", show_envvar=True, type=SecretType(), help=_TOKEN_HELP
)
@click.option("--losantdomain", metavar="DOMAIN", help=_DOMAIN_HELP)
@click.option("--allow-insecure-http", is_flag=True, help=_INSECURE_HELP)
@click.option("-v", "--verbose", count=True, help=_VERBOSE_HELP)
@click.version_option(__version__, prog_name="asyncmembers")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str,
    token: Secret | None,
    losantdomain: str | None,
    allow_insecure_http: bool,
    verbose: int,
) -> None:
    """List, add, bulk-import, sync and remove the members of a Losant instance.

    \b
    Talks to the Losant Platform API's Instance Members resource:
      asyncmembers list --instance ID
      asyncmembers add --instance ID --email ada@example.com --role view
      asyncmembers import members.csv --instance ID --errors errors.csv
      asyncmembers sync members.csv --instance ID --prune --dry-run
      asyncmembers remove --instance ID --email ada@example.com
    Try it without an account: `asyncmembers demo`, or run `asyncmembers fake-server`
    and point --url at it.

    Global options may also follow the command name. --instance may come from
    LOSANT_INSTANCE_ID.
    """
    redactor = _setup_logging(ctx, verbose)
    if token is not None:
        redactor.secrets.add(token.reveal())
    ctx.meta["asyncmembers.redactor"] = redactor
    ctx.obj = GlobalOptions(
        url=url,
        token=token,
        losantdomain=losantdomain,
        verbose=verbose,
        allow_insecure_http=allow_insecure_http,
    )


def api_options(func: F) -> F:
    """Accept the global options after the command name too.

    ``--url``, ``--token``, ``--losantdomain``, ``--allow-insecure-http`` and ``-v`` may
    follow the command (as the README says). The decorated command receives ``options``:
    the group's :class:`GlobalOptions` overridden by any of these given after the command
    name. (Environment variables are read by the group only, so an explicit option always
    wins over them.)
    """

    @click.option("--url", metavar="URL", help=_URL_HELP + " [env var: LOSANT_API_URL]")
    @click.option("--token", type=SecretType(), help=_TOKEN_HELP + " [env var: LOSANT_API_TOKEN]")
    @click.option("--losantdomain", metavar="DOMAIN", help=_DOMAIN_HELP)
    @click.option("--allow-insecure-http", "insecure", is_flag=True, help=_INSECURE_HELP)
    @click.option("-v", "--verbose", "more_verbose", count=True, help=_VERBOSE_HELP)
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        url: str | None,
        token: Secret | None,
        losantdomain: str | None,
        insecure: bool,
        more_verbose: int,
        **kwargs: Any,
    ) -> Any:
        ctx = click.get_current_context()
        base = ctx.find_object(GlobalOptions) or GlobalOptions()
        if token is not None:
            redactor = ctx.meta.get("asyncmembers.redactor")
            if isinstance(redactor, _Redactor):
                redactor.secrets.add(token.reveal())
        options = base.merged(url, token, losantdomain)
        if insecure:
            options.allow_insecure_http = True
        if more_verbose:
            options.verbose += more_verbose
            logging.getLogger("asyncmembers").setLevel(_level(options.verbose))
        return func(*args, options=options, **kwargs)

    return wrapper  # type: ignore[return-value]


def _register() -> None:
    from ._commands import add, demo, fake_server, import_, list_, remove, sync

    for command in (
        list_.list_members,
        add.add,
        import_.import_members,
        sync.sync_members_command,
        remove.remove,
        fake_server.fake_server,
        demo.demo,
    ):
        cli.add_command(command)


_register()


def main(args: list[str] | None = None) -> None:
    """The console script: run the CLI and exit with its status."""
    try:
        cli.main(args=args, prog_name="asyncmembers")
    except KeyboardInterrupt:  # pragma: no cover - click turns most into Abort (exit 1)
        sys.exit(EXIT_INTERRUPTED)
