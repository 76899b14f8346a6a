"""``asyncmembers fake-server``: the embedded Losant-compatible server, in the foreground."""

from __future__ import annotations

import signal
import sys

import click

from ..._runtime import run
from ...testing import DEFAULT_INSTANCE_ID, DEFAULT_TOKEN, FakeLosantServer, Faults, serve_forever
from .._common import EXIT_OK, ObjectIdType, fail, finish

__all__ = ["fake_server"]

_FRACTION = click.FloatRange(0.0, 1.0)
_NON_NEGATIVE = click.FloatRange(min=0.0)


@click.command("fake-server")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on (127.0.0.1, ::1 or localhost).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the URL is the first line printed).",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="TOKEN",
    help=f"An access token to accept, with scope all.Instance; repeatable. "
    f"Default: {DEFAULT_TOKEN}.",
)
@click.option(
    "--instance",
    "instances",
    multiple=True,
    type=ObjectIdType("instanceId"),
    metavar="ID",
    help=f"An instance that exists (empty at start); repeatable. Default: {DEFAULT_INSTANCE_ID}.",
)
@click.option(
    "--latency", type=_NON_NEGATIVE, default=0.0, metavar="S", help="Seconds added to each request."
)
@click.option(
    "--error-rate",
    type=_FRACTION,
    default=0.0,
    metavar="F",
    help="Fraction of requests answered 500/502/503/504.",
)
@click.option(
    "--rate-limit",
    type=_NON_NEGATIVE,
    default=0.0,
    metavar="R",
    help="Requests per second allowed; beyond it 429 with Retry-After. 0: no limit.",
)
@click.option(
    "--drop-before-commit-rate",
    type=_FRACTION,
    default=0.0,
    metavar="F",
    help="Fraction of connections cut before the request is applied.",
)
@click.option(
    "--drop-after-commit-rate",
    type=_FRACTION,
    default=0.0,
    metavar="F",
    help="Fraction of requests applied, then the connection cut without an answer.",
)
@click.option(
    "--stall-rate",
    type=_FRACTION,
    default=0.0,
    metavar="F",
    help="Fraction of requests answered only after 30 s (trips client timeouts).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for the faults and user ids."
)
def fake_server(
    host: str,
    port: int,
    tokens: tuple[str, ...],
    instances: tuple[str, ...],
    latency: float,
    error_rate: float,
    rate_limit: float,
    drop_before_commit_rate: float,
    drop_after_commit_rate: float,
    stall_rate: float,
    seed: int,
) -> None:
    """Run the embedded Losant-compatible server until Ctrl-C or SIGTERM.

    It serves GET and POST /instances/{instanceId}/members (list, add) and GET, PATCH
    and DELETE /instances/{instanceId}/members/{userId} (read one member, change its
    role, remove it), with the API's scopes and errors; the faults below apply to all.

    The first line printed is the server's URL; the next lines say how to use it.
    Members live in memory and are gone when it stops. Stopping it (Ctrl-C or
    SIGTERM) is its normal end: it shuts down cleanly and exits 0.

    \b
    Example:
      asyncmembers fake-server --port 8080 --latency 0.02 --rate-limit 200
      LOSANT_API_URL=http://127.0.0.1:8080 LOSANT_API_TOKEN=test-token \\
          asyncmembers import members.csv --instance 575ec8687ae143cd83dc4a97
    """
    try:
        faults = Faults(
            latency=latency,
            error_rate=error_rate,
            rate_limit=rate_limit,
            drop_before_commit_rate=drop_before_commit_rate,
            drop_after_commit_rate=drop_after_commit_rate,
            stall_rate=stall_rate,
        )
        server = FakeLosantServer(
            tokens={token: ["all.Instance"] for token in tokens or (DEFAULT_TOKEN,)},
            instances=list(instances) or [DEFAULT_INSTANCE_ID],
            faults=faults,
            seed=seed,
            host=host,
            port=port,
        )
    except (ValueError, TypeError) as exc:
        fail(str(exc))

    def ready(url: str) -> None:
        # The URL alone on the first line, flushed at once: scripts wait for it.
        sys.stdout.write(url + "\n")
        sys.stdout.flush()
        # Tokens of this server are test credentials the user chose: shown so curl works.
        shown = tokens[0] if tokens else DEFAULT_TOKEN
        lines = []
        if not tokens:
            lines.append(f"token: {shown}")
        lines += [f"instance: {instance}" for instance in server.instances]
        lines += [
            "try:",
            f'  curl -H "Authorization: Bearer {shown}" {url}/instances/{server.instance_id}/members',
            f"  LOSANT_API_URL={url} LOSANT_API_TOKEN={shown} "
            f"asyncmembers list --instance {server.instance_id}",
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        click.echo("Serving; press Ctrl-C to stop.", err=True)

    try:
        received = run(serve_forever(server, on_ready=ready))
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except KeyboardInterrupt:  # a signal before the handlers were installed
        received = signal.SIGINT
    name = received.name if received is not None else "stop"
    click.echo(f"Stopped ({name}).", err=True)
    finish(EXIT_OK)
