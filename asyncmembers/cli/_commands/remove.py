"""``asyncmembers remove``: remove one member (by email or userId) or every member a file lists."""

from __future__ import annotations

import asyncio
import contextlib
import os

import attrs
import click

from ...bulk import Progress
from ...client import Client
from ...errors import LosantError, NotFoundError, ValidationError
from ...models import InstanceMemberPost
from ...report import ErrorReportWriter
from ...resources import members_path
from .._app import api_options
from .._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    GlobalOptions,
    ObjectIdType,
    current_stop,
    exit_code_for,
    fail,
    finish,
    instance_option,
    one_line,
    run_async,
)
from .._options import RunOptions, SourceOptions, run_options_no_journal, source_options
from .._output import (
    make_progress,
    out_console,
    print_failures,
    print_summary,
    progress_mode,
    write_summary_json,
)
from .._removing import NOBODY, RemoveResult, remove_rows

__all__ = ["remove"]


async def _remove_one(
    client: Client,
    *,
    instance_id: str,
    email: str | None,
    user_id: str | None,
    losantdomain: str | None,
) -> str:
    """Remove one member; return the line to print. Not a member: exit 1, saying so."""
    async with client:
        if user_id is None:
            assert email is not None
            found = await client.instance_members.find_raw(
                members_path(instance_id), email=email, losantdomain=losantdomain
            )
            if found is None or not isinstance(found.get("userId"), str):
                raise CliError(f"{email} is not a member of instance {instance_id}", EXIT_FAILED)
            user_id = found["userId"]
            who = f"{email} (userId {user_id})"
            # Read as a member a moment ago: a 404 now means gone (a resent DELETE's 404).
            with contextlib.suppress(NotFoundError):
                await client.instance_member.delete(
                    instanceId=instance_id, userId=user_id, losantdomain=losantdomain
                )
        else:
            who = f"user {user_id}"
            try:
                await client.instance_member.delete(
                    instanceId=instance_id, userId=user_id, losantdomain=losantdomain
                )
            except NotFoundError:
                # Unknown instance (fatal, exit 3) or not a member (exit 1): ask which.
                await client.instance_members.find_raw(
                    members_path(instance_id),
                    email=NOBODY,
                    losantdomain=losantdomain,
                )
                raise CliError(
                    f"user {user_id} is not a member of instance {instance_id}", EXIT_FAILED
                ) from None
    return f"Removed {who} from instance {instance_id}."


@click.command("remove")
@click.argument("file", metavar="[FILE|-]", required=False)
@instance_option
@click.option("--email", metavar="EMAIL", help="Remove the member with this email address.")
@click.option(
    "--user-id",
    type=ObjectIdType("userId"),
    metavar="ID",
    help="Remove the member with this user ID (24 hex digits).",
)
@source_options
@run_options_no_journal
@api_options
def remove(
    options: GlobalOptions,
    file: str | None,
    instance_id: str,
    email: str | None,
    user_id: str | None,
    source: SourceOptions,
    run: RunOptions,
) -> None:
    """Remove one member (--email or --user-id), or every member listed in FILE.

    \b
    One member: exit 0 when removed, 1 (saying so) when it is not a member.
    FILE is read as for import (the role column, if any, is ignored): a row with a
    userId is removed by it; a row with only an email is looked up first. Rows
    naming no member are skipped ("not a member"), so running the command again
    after a stop finishes the job. The summary, --errors, --summary-json and the
    exit statuses are as for import.

    \b
    Examples:
      asyncmembers remove --instance 575ec8687ae143cd83dc4a97 --email ada@example.com
      asyncmembers remove leavers.csv --instance 575ec8687ae143cd83dc4a97 --errors errors.csv
    """
    given = [
        name
        for name, value in (("--email", email), ("--user-id", user_id), ("FILE", file))
        if value is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --email, --user-id or FILE")
    client = options.client()
    if file is None:
        if email is not None:
            try:
                email = InstanceMemberPost(role="view", email=email).email
            except ValidationError as exc:
                fail(f"--email: {exc.message}")
        line = run_async(
            _remove_one(
                client,
                instance_id=instance_id,
                email=email,
                user_id=user_id,
                losantdomain=options.losantdomain,
            )
        )
        click.echo(line)
        finish(EXIT_OK)
    # The role is not needed to remove a member: a file without a role column is fine.
    rows = attrs.evolve(source, default_role=source.default_role or "view").open(file)
    mode = progress_mode(run.no_progress)
    try:
        code = run_async(_remove_file(client, rows, instance_id, run, options, mode))
    finally:
        rows.close()
    finish(code)


async def _remove_file(
    client: Client,
    rows: object,
    instance_id: str,
    run: RunOptions,
    options: GlobalOptions,
    mode: str,
) -> int:
    stop = current_stop()
    out = out_console()
    report: ErrorReportWriter | None = None
    columns = getattr(rows, "columns", None)
    if run.errors is not None:
        try:
            report = ErrorReportWriter(run.errors, columns=columns)
        except OSError as exc:
            raise CliError(
                f"--errors: cannot write {os.fspath(run.errors)}: {exc.strerror or exc}",
                EXIT_USAGE,
            ) from None
    live = Progress()
    display = make_progress(mode, live, label="Removing", noun="remove")  # type: ignore[arg-type]
    stop.on_first = lambda: None  # the feeder sees stop.requested; rows taken finish

    def summary_file(
        code: int, status: str, result: RemoveResult | None, error: str | None
    ) -> None:
        if run.summary_json is not None:
            write_summary_json(
                run.summary_json,
                exit_status=code,
                status=status,
                result=result,
                error=error,
                command="remove",
            )

    display.start()
    try:
        async with client:
            result = await remove_rows(
                client,
                rows,  # type: ignore[arg-type]
                instance_id=instance_id,
                concurrency=run.concurrency,
                max_rate=run.max_rate,
                dry_run=run.dry_run,
                losantdomain=options.losantdomain,
                progress=live,
                on_failure=report.write if report is not None else None,
                should_stop=lambda: stop.requested,
            )
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        display.stop()
        out.print(f"{stop.word} again: stopped at once after {live.done:,} rows.", highlight=False)
        summary_file(stop.exit_code, "interrupted", None, f"{stop.word.lower()} twice")
        return stop.exit_code
    except LosantError as exc:
        display.stop()
        partial = exc.result if isinstance(exc.result, RemoveResult) else None
        code = exit_code_for(exc)
        if partial is not None and partial.total:
            print_summary(out, partial, status="stopped")
        summary_file(code, "stopped", partial, one_line(exc))
        raise CliError(one_line(exc), code) from None
    finally:
        stop.on_first = None
        display.stop()
        if report is not None:
            report.close()
    print_summary(out, result, status="interrupted" if stop.requested else "complete")
    print_failures(out, result, errors_path=run.errors)
    if stop.requested:
        out.print(
            f"{stop.word} after {result.total:,} rows. Run the same command again to finish: "
            "members already removed are skipped.",
            highlight=False,
        )
        summary_file(stop.exit_code, "interrupted", result, None)
        return stop.exit_code
    code = EXIT_OK if result.ok else EXIT_FAILED
    summary_file(code, "complete", result, None)
    if report is not None and report.count:
        click.echo(f"{report.count:,} failed rows written to {run.errors}", err=True)
    return code
