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
from .._syncing import SyncRun, run_sync

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


#: The second step of ``demo --sync``: the changed list differs from the instance by this.
SYNC_NEW: Final = 25
SYNC_ROLE_EVERY: Final = 25  # every 25th member changes role
SYNC_LEAVER_EVERY: Final = 30  # every 30th member leaves (about 3 %: under the 10 % guard)


def _key(member: dict[str, object]) -> str:
    email = member.get("email")
    return str(email).lower() if email else str(member.get("userId"))


def _changed_list(members: list[dict[str, object]], path: Path) -> dict[str, str]:
    """Write the demo's changed list (new hires, role changes, leavers) as a CSV.

    Returns what the instance must hold after the sync: lower-cased email (or userId, for
    a member without one) -> role.
    """
    current = sorted((_key(m), str(m.get("email") or ""), m) for m in members)
    wanted: dict[str, str] = {}
    lines = ["email,userId,role\n"]
    for n, (key, email, member) in enumerate(current):
        if n % SYNC_LEAVER_EVERY == SYNC_LEAVER_EVERY - 1:
            continue
        role = str(member.get("role"))
        if n % SYNC_ROLE_EVERY == 0:
            role = "admin" if role == "view" else "view"
        wanted[key] = role
        user_id = "" if email else str(member.get("userId"))
        lines.append(f"{email},{user_id},{role}\n")
    for i in range(SYNC_NEW):
        wanted[f"new.hire{i:02d}@example.com"] = "view"
        lines.append(f"new.hire{i:02d}@example.com,,view\n")
    path.write_text("".join(lines), encoding="utf-8")
    return wanted


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
    *, errors: Path, progress: ProgressMode, sample: Path, token: str, sync: bool = False
) -> tuple[ImportRun, _Check, SyncRun | None, bool]:
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
                return run, _Check(0, 0, 0, 0), None, False
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
        if not sync:
            return run, check, None, False
        changed = errors.parent / "changed_members.csv"
        wanted = _changed_list(truth, changed)
        out.print(
            f"\n[bold]Step 2: the list changed.[/] {changed} holds {len(wanted):,} members: "
            f"{SYNC_NEW} new hires, a role change for every {SYNC_ROLE_EVERY}th member, and "
            f"every {SYNC_LEAVER_EVERY}th member gone. Syncing it with --prune, under the "
            "same faults:\n"
        )
        server.faults = faults
        async with Client(auth_token=token, url=server.url) as client:
            synced = await run_sync(
                client,
                open_source(changed),
                instance_id=DEMO_INSTANCE,
                prune=True,
                concurrency=DEMO_CONCURRENCY,
                progress=progress,
                label="Syncing",
            )
        server.faults = Faults()
        now = {_key(m): str(m["role"]) for m in server.members(DEMO_INSTANCE)}
        return (
            run,
            check,
            synced,
            now == wanted and len(server.members(DEMO_INSTANCE)) == len(wanted),
        )


@click.command("demo")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Where to write the error report. Default: a new temporary directory (printed).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@click.option(
    "--sync",
    "with_sync",
    is_flag=True,
    help="Then sync a changed list (new hires, role changes, leavers) with --prune: the "
    "whole membership lifecycle.",
)
def demo(errors_path: Path | None, no_progress: bool, with_sync: bool) -> None:
    """Import a bundled sample list into the embedded server, with faults, and show the result.

    Needs no account and no network: it starts the embedded Losant-compatible server on
    127.0.0.1 with latency, a rate limit, server errors and cut connections, imports
    1,000 sample members, prints the summary, lists the first members by role and
    writes the error report.

    With --sync, a second step syncs a changed list (25 new hires, role changes,
    leavers) with --prune under the same faults, printing the plan before any change
    and the summary, and checks that the server then holds exactly that list.

    Exit status 0 when the run went as designed: only the sample's invalid rows
    failed, and the server holds every valid row exactly once (with --sync: exactly
    the changed list). 1 otherwise.
    """
    if errors_path is None:
        errors_path = Path(tempfile.mkdtemp(prefix="asyncmembers-demo-")) / "errors.csv"
    mode = progress_mode(no_progress)
    token = secrets.token_urlsafe(16)  # the demo's own; nothing real is ever used
    with _sample_path() as sample:
        run, check, synced, sync_ok = run_async(
            _run(errors=errors_path, progress=mode, sample=sample, token=token, sync=with_sync)
        )
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
    if with_sync:
        if synced is None or synced.exit_code not in (EXIT_OK, EXIT_FAILED):
            finish(synced.exit_code if synced is not None else EXIT_FAILED)
        if sync_ok:
            out.print(
                "[green]✓[/] After the sync the server holds exactly the changed list: "
                "each new hire once, every role as listed, every leaver gone."
            )
        else:
            out.print("[red]✗[/] After the sync the server does not hold the changed list.")
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
        "Running the import again with the same --journal resumes where it stopped.\n"
        "  asyncmembers sync members.csv --instance <instance-id> --prune --dry-run\n"
        "shows what a sync would add, change and remove; without --dry-run it does it.",
        highlight=False,
    )
    ok = check.ok and not unexpected and (sync_ok or not with_sync)
    finish(EXIT_OK if ok else EXIT_FAILED)
