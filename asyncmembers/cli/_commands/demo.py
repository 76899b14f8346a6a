"""``asyncmembers demo``: the whole job against the embedded server, in a few seconds."""

from __future__ import annotations

import contextlib
import importlib.resources
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
import click

from ...client import Client
from ...errors import ValidationError
from ...sources import SourceRow, count_rows, open_source
from ...testing import FakeLosantServer, Faults
from .._common import EXIT_FAILED, EXIT_OK, finish, run_async
from .._importing import ImportRun, run_import
from .._output import ProgressMode, out_console, print_members_table, progress_mode

__all__ = ["DEMO_FAULTS", "demo"]

DEMO_INSTANCE: Final = "575ec8687ae143cd83dc4a97"
#: What the demo's server does wrong: a realistic day on a busy API.
DEMO_FAULTS: Final = Faults(
    latency=0.02,
    error_rate=0.02,
    rate_limit=250.0,
    drop_after_commit_rate=0.01,
)
DEMO_SEED: Final = 7
DEMO_CONCURRENCY: Final = 16
#: How many users of the sample list are members before the import.
PREEXISTING: Final = 5
SAMPLE: Final = "sample_members.csv"


@contextlib.contextmanager
def _sample_path() -> Iterator[Path]:
    """The bundled sample list as a file path (extracted if the package is zipped)."""
    ref = importlib.resources.files("asyncmembers").joinpath("data", SAMPLE)
    with importlib.resources.as_file(ref) as path:
        yield path


def _preexisting(path: Path) -> list[SourceRow]:
    """A few valid rows spread over the list, to be members before the import."""
    with open_source(path) as rows:
        valid = []
        for row in rows:
            try:
                post = row.to_member_post()
            except ValidationError:
                continue
            if post.email is not None:
                valid.append(row)
    step = max(1, len(valid) // PREEXISTING)
    return valid[step // 2 :: step][:PREEXISTING]


@attrs.define
class _Check:
    """Whether the server ended up holding exactly what the import says it did."""

    members: int
    expected: int
    duplicates: int
    dropped_after_commit: int

    @property
    def ok(self) -> bool:
        return self.members == self.expected and self.duplicates == 0


async def _run(
    *, errors: Path, progress: ProgressMode, sample: Path, token: str
) -> tuple[ImportRun, _Check]:
    out = out_console()
    faults = DEMO_FAULTS
    async with FakeLosantServer(
        tokens={token: ["all.Instance"]}, instances=[DEMO_INSTANCE], faults=faults, seed=DEMO_SEED
    ) as server:
        for row in _preexisting(sample):
            post = row.to_member_post()
            server.add_member(DEMO_INSTANCE, email=post.email, role=post.role.value)
        out.print(
            f"[bold]Embedded Losant-compatible server[/] at {server.url}: "
            f"{faults.latency * 1000:.0f} ms latency, at most {faults.rate_limit:.0f} requests/s "
            f"(then 429 + Retry-After), {faults.error_rate:.0%} server errors, "
            f"{faults.drop_after_commit_rate:.0%} of connections cut after the request was applied. "
            f"{PREEXISTING} users of the list are members already."
        )
        out.print(
            f"Importing the bundled sample list ({SAMPLE}: 1,000 rows with a name and team "
            f"column, a few invalid rows and duplicates), {DEMO_CONCURRENCY} requests at once.\n"
        )
        source = open_source(sample)
        async with Client(auth_token=token, url=server.url) as client:
            run = await run_import(
                client,
                source,
                instance_id=DEMO_INSTANCE,
                concurrency=DEMO_CONCURRENCY,
                errors=errors,
                progress=progress,
                total=count_rows(sample),
                label="Importing sample",
            )
            if run.exit_code not in (EXIT_OK, EXIT_FAILED):
                return run, _Check(0, 0, 0, 0)
            server.faults = Faults()  # the listing below is not part of the exercise
            members = await client.instance_members.get(
                instanceId=DEMO_INSTANCE, sortField="role", sortDirection="asc"
            )
        out.print()
        print_members_table(out, members, title="Members, sorted by role", limit=10)
        truth = server.members(DEMO_INSTANCE)
        keys = [(m.get("email") or "").lower() or m.get("userId") for m in truth]
        created = run.result.created if run.result is not None else 0
        check = _Check(
            members=len(truth),
            expected=PREEXISTING + created,
            duplicates=len(keys) - len(set(keys)),
            dropped_after_commit=server.stats.faults["drop_after_commit"],
        )
        return run, check


@click.command("demo")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Where to write the error report. Default: a new temporary directory (printed).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
def demo(errors_path: Path | None, no_progress: bool) -> None:
    """Import a bundled sample list into the embedded server, with faults, and show the result.

    Needs no account and no network: it starts the embedded Losant-compatible server on
    127.0.0.1 with latency, a rate limit, server errors and cut connections, imports
    1,000 sample members, prints the summary, lists the first members by role and
    writes the error report.

    Exit status 0 when the run went as designed: only the sample's invalid rows
    failed, and the server holds every valid row exactly once. 1 otherwise.
    """
    if errors_path is None:
        errors_path = Path(tempfile.mkdtemp(prefix="asyncmembers-demo-")) / "errors.csv"
    mode = progress_mode(no_progress)
    token = secrets.token_urlsafe(16)  # the demo's own; nothing real is ever used
    with _sample_path() as sample:
        run, check = run_async(_run(errors=errors_path, progress=mode, sample=sample, token=token))
    if run.exit_code not in (EXIT_OK, EXIT_FAILED):
        finish(run.exit_code)
    out = out_console()
    result = run.result
    assert result is not None
    unexpected = [f for f in result.failures if not isinstance(f.error, ValidationError)]
    out.print()
    if check.ok:
        out.print(
            f"[green]✓[/] The server holds {check.members:,} members: the {PREEXISTING} from "
            f"before and each of the {result.created:,} new ones exactly once, although "
            f"the server cut {check.dropped_after_commit} connections after applying the request "
            "(the client looked before sending again)."
        )
    else:
        out.print(
            f"[red]✗[/] The server holds {check.members:,} members "
            f"({check.duplicates} duplicated); {check.expected:,} were expected."
        )
    if unexpected:
        out.print(f"[red]✗[/] {len(unexpected)} rows failed for a reason other than bad input.")
    # The path on a line of its own, never wrapped, so it can be copied.
    click.echo(f"Error report: {errors_path}")
    out.print(
        f"  {run.report_rows} rows: the sample's invalid rows with their original columns, then "
        "line, error_type, status and message. Fix them and import the file again."
    )
    out.print(
        "\n[bold]The same import against your Losant instance:[/]\n"
        "  export LOSANT_API_TOKEN=...   # an API token with the all.Instance scope\n"
        "  asyncmembers import members.csv --instance <instance-id> \\\n"
        "      --errors errors.csv --journal import.journal\n"
        "  asyncmembers list --instance <instance-id> --sort-field role\n"
        "Running the import again with the same --journal resumes where it stopped.",
        highlight=False,
    )
    finish(EXIT_OK if check.ok and not unexpected else EXIT_FAILED)
