"""``asyncmembers import``: bulk-add members from a CSV, JSON Lines or JSON file."""

from __future__ import annotations

import click

from ...sources import SourceError, count_rows, open_source
from .._app import api_options
from .._common import GlobalOptions, fail, finish, instance_option, one_line, run_async
from .._importing import run_import
from .._output import progress_mode

__all__ = ["import_members"]


@click.command("import")
@click.argument("file", metavar="FILE|-")
@instance_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "json"], case_sensitive=False),
    help="File format. Default: from the extension (.csv, .jsonl/.ndjson, .json); "
    "for - it is sniffed from the first character.",
)
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
@click.option("--dry-run", is_flag=True, help="Validate and plan; add nobody.")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Write failed rows to this CSV as they happen: the original columns, then line, "
    "error_type, status, message. Fix it and import it again.",
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Record each row's outcome here; running the same command again resumes, "
    "skipping rows already done.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@api_options
def import_members(
    options: GlobalOptions,
    file: str,
    instance_id: str,
    fmt: str | None,
    concurrency: int,
    max_rate: float | None,
    dry_run: bool,
    errors_path: str | None,
    journal: str | None,
    no_progress: bool,
) -> None:
    """Add every member listed in FILE (- reads standard input).

    \b
    A CSV needs a header with role and email and/or userId; other columns are
    kept in the error report. JSON Lines has one object per line, JSON an array
    of objects, with the same keys. Rows that are invalid, or that the server
    refuses, are counted and reported; the rest go on. Users already in the
    instance and repeated rows are skipped.

    \b
    Example:
      LOSANT_API_TOKEN=... asyncmembers import members.csv \\
          --instance 575ec8687ae143cd83dc4a97 --errors errors.csv --journal import.journal
    """
    if errors_path == "-" or journal == "-":
        raise click.UsageError("--errors and --journal need a file path, not -")
    client = options.client()
    try:
        source = open_source(file, format=fmt)
    except SourceError as exc:
        fail(one_line(exc))
    total = None if file == "-" else count_rows(file, format=fmt)
    mode = progress_mode(no_progress)

    async def go() -> int:
        async with client:
            run = await run_import(
                client,
                source,
                instance_id=instance_id,
                concurrency=concurrency,
                max_rate=max_rate,
                dry_run=dry_run,
                journal=journal,
                errors=errors_path,
                losantdomain=options.losantdomain,
                progress=mode,
                total=total,
            )
        if errors_path is not None and run.report_rows:
            click.echo(
                f"{run.report_rows:,} failed row{'s' if run.report_rows != 1 else ''} "
                f"written to {errors_path}",
                err=True,
            )
        return run.exit_code

    try:
        code = run_async(go())
    finally:
        source.close()
    finish(code)
