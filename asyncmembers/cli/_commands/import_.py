"""``asyncmembers import``: bulk-add members from a CSV, JSON Lines or JSON file."""

from __future__ import annotations

import click

from .._app import api_options
from .._common import GlobalOptions, instance_option, run_file_command, say_report_rows
from .._importing import run_import
from .._options import RunOptions, SourceOptions, run_options, source_options
from .._output import progress_mode

__all__ = ["import_members"]


@click.command("import")
@click.argument("file", metavar="FILE|-")
@instance_option
@click.option(
    "--update-roles",
    is_flag=True,
    help="Change the role of existing members whose role differs from the row's. Without "
    "it they are skipped, with the reason naming their current role.",
)
@source_options
@run_options
@api_options
def import_members(
    options: GlobalOptions,
    file: str,
    instance_id: str,
    update_roles: bool,
    source: SourceOptions,
    run: RunOptions,
) -> None:
    """Add every member listed in FILE (- reads standard input).

    \b
    A CSV needs a header naming the email and/or userId, and the role (or
    --default-role); exports of Google Workspace, Okta, Azure AD and Auth0 are
    recognised, and --email-column, --user-id-column, --role-column name any other
    column. The delimiter is sniffed; UTF-8 unless --encoding (UTF-16 is found by
    its byte order mark). JSON Lines has one object per line, JSON an array of
    objects, with the same keys. Invalid rows and rows the server refuses are
    counted and reported; the rest go on. Users already in the instance and
    repeated rows are skipped; with --update-roles a member whose role differs has
    it changed. Ctrl-C or SIGTERM stops cleanly: the rows in flight
    finish, the journal and the summary are written; run the command again to
    finish.

    \b
    Example:
      LOSANT_API_TOKEN=... asyncmembers import members.csv \\
          --instance 575ec8687ae143cd83dc4a97 --errors errors.csv --journal import.journal
    """
    client = options.client()
    rows = source.open(file)
    total = source.estimate(file)
    mode = progress_mode(run.no_progress)

    async def go() -> int:
        async with client:
            outcome = await run_import(
                client,
                rows,
                instance_id=instance_id,
                concurrency=run.concurrency,
                max_rate=run.max_rate,
                dry_run=run.dry_run,
                journal=run.journal,
                errors=run.errors,
                summary_json=run.summary_json,
                losantdomain=options.losantdomain,
                progress=mode,
                total=total,
                update_roles=update_roles,
                source_path=None if file == "-" else file,
            )
        say_report_rows(run.errors, outcome.report_rows)
        return outcome.exit_code

    run_file_command(go(), rows)
