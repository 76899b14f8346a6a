"""``asyncmembers sync``: make an instance's members equal a list (add, change role, prune)."""

from __future__ import annotations

import click

from .._app import api_options
from .._common import GlobalOptions, instance_option, run_file_command, say_report_rows
from .._options import RunOptions, SourceOptions, run_options, source_options
from .._output import progress_mode
from .._syncing import run_sync

__all__ = ["sync_members_command"]


@click.command("sync")
@click.argument("file", metavar="FILE|-")
@instance_option
@click.option(
    "--prune",
    is_flag=True,
    help="Also remove the members that no row of FILE names. Without it nobody is removed.",
)
@click.option(
    "--max-removals",
    type=click.IntRange(min=0),
    metavar="N",
    help="With --prune, refuse (exit 2, nothing changed) to remove more than N members. "
    "Default: 10% of the current members.",
)
@source_options
@run_options
@api_options
def sync_members_command(
    options: GlobalOptions,
    file: str,
    instance_id: str,
    prune: bool,
    max_removals: int | None,
    source: SourceOptions,
    run: RunOptions,
) -> None:
    """Make the instance's members equal the list in FILE (- reads standard input).

    \b
    FILE is read as for import. Each row is matched to a current member by userId or
    email (any letter case): a missing member is added, a member with another role
    has its role changed, an equal row is unchanged. With --prune, members that no
    row names are removed; a prune that would remove more than --max-removals (by
    default 10% of the members) is refused before anything changes. The plan (how
    many of each, and the first rows of each kind) is printed before any change;
    --dry-run stops there. Ctrl-C or SIGTERM lets the requests in flight finish and
    prints the partial summary; running the command again finishes the job.

    \b
    Examples:
      asyncmembers sync members.csv --instance 575ec8687ae143cd83dc4a97 --dry-run --prune
      asyncmembers sync members.csv --instance 575ec8687ae143cd83dc4a97 --prune \\
          --errors errors.csv --journal sync.journal
    """
    if max_removals is not None and not prune:
        raise click.UsageError("--max-removals only applies with --prune")
    client = options.client()
    rows = source.open(file)
    mode = progress_mode(run.no_progress)

    async def go() -> int:
        async with client:
            outcome = await run_sync(
                client,
                rows,
                instance_id=instance_id,
                prune=prune,
                max_removals=max_removals,
                concurrency=run.concurrency,
                max_rate=run.max_rate,
                dry_run=run.dry_run,
                journal=run.journal,
                errors=run.errors,
                summary_json=run.summary_json,
                losantdomain=options.losantdomain,
                progress=mode,
                source_path=None if file == "-" else file,
            )
        say_report_rows(run.errors, outcome.report_rows)
        return outcome.exit_code

    run_file_command(go(), rows)
