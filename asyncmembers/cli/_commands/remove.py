"""``asyncmembers remove``: remove one member (by email or userId) or every member a file lists."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import attrs
import click

from ...bulk import (
    Outcome,
    Progress,
    RemoveResult,
    StoppedError,
    remove_members,
)
from ...client import Client
from ...errors import LosantError, NotFoundError, ValidationError
from ...models import InstanceMemberPost
from ...resources import members_path
from .._app import api_options
from .._common import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    GlobalOptions,
    ObjectIdType,
    current_stop,
    exit_code_for,
    fail,
    finish,
    instance_option,
    one_line,
    open_error_report,
    run_async,
    say_report_rows,
    write_failed_row,
)
from .._options import RunOptions, SourceOptions, run_options, source_options
from .._output import (
    ProgressMode,
    make_progress,
    out_console,
    print_failures,
    print_summary,
    progress_mode,
    summary_writer,
)
from .._threaded import InputRows

__all__ = ["remove"]

#: An address no user can have (RFC 2606): the GET that tells an unknown instance (exit 3)
#: from a userId that is not a member (exit 1).
NOBODY: Final = "asyncmembers-instance-check@example.invalid"


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
@run_options
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
    userId names that member, a row with only an email the member with that email.
    The members are read once first (a bad token or an unknown instance stops the
    run there, with nobody removed). Rows naming no member are skipped ("not a
    member"), so running the command again after a stop finishes the job; with
    --journal the rows removed earlier are skipped as done. Ctrl-C or SIGTERM lets
    the removals in flight finish and prints the partial summary. The summary,
    --errors, --summary-json and the exit statuses are as for import.

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
    # The role is not needed to remove a member: a file without a role column is fine
    # (remove_members ignores any role a row has).
    rows = attrs.evolve(source, default_role=source.default_role or "view").open(file)
    mode = progress_mode(run.no_progress)
    try:
        code = run_async(
            _remove_file(
                client, rows, instance_id, run, options, mode, None if file == "-" else file
            ),
            graceful=True,
        )
    finally:
        rows.close()
    finish(code)


async def _remove_file(
    client: Client,
    rows: InputRows,
    instance_id: str,
    run: RunOptions,
    options: GlobalOptions,
    mode: ProgressMode,
    source_path: str | None,
) -> int:
    """``remove FILE``: only wiring around :func:`asyncmembers.bulk.remove_members`.

    The summary, ``--summary-json``, the ``--errors`` report, the progress and the exit
    status read the engine's one :class:`RemoveResult`, :class:`Progress` and outcomes,
    as ``import`` does.
    """
    stop = current_stop()
    out = out_console()
    report = open_error_report(
        rows.columns,
        journal=run.journal,
        errors=run.errors,
        summary_json=run.summary_json,
        source_path=source_path,
    )
    live = Progress()
    display = make_progress(mode, live, label="Removing", noun="remove")

    def on_outcome(outcome: Outcome) -> None:
        if report is not None and outcome.kind == "failed" and outcome.error is not None:
            write_failed_row(report, run.errors, outcome.member, outcome.error)

    summary_file = summary_writer(run.summary_json, live, "remove")

    def again_hint() -> str:
        how = f"the journal {run.journal} lists" if run.journal is not None else "already removed"
        return f"Run the same command again to finish: rows {how} are skipped."

    display.start()
    try:
        async with client:
            result = await remove_members(
                client,
                instanceId=instance_id,
                members=rows,
                concurrency=run.concurrency,
                max_rate=run.max_rate,
                dry_run=run.dry_run,
                journal=run.journal,
                on_outcome=on_outcome,
                progress=live,
                protect=(source_path, run.errors, run.summary_json),
                losantdomain=options.losantdomain,
                stop=stop.event(),
            )
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        display.stop()
        out.print(
            f"{stop.word} again: stopped at once after {live.done:,} rows. {again_hint()}",
            highlight=False,
        )
        summary_file(stop.exit_code, "interrupted", None, f"{stop.word.lower()} twice")
        return stop.exit_code
    except StoppedError as exc:
        display.stop()
        partial = exc.result if isinstance(exc.result, RemoveResult) else None
        if partial is not None:
            print_summary(out, partial, status="interrupted")
            print_failures(out, partial, errors_path=run.errors)
        done = partial.total if partial is not None else live.done
        out.print(f"{stop.word} after {done:,} rows. {again_hint()}", highlight=False)
        summary_file(stop.exit_code, "interrupted", partial, None)
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
        display.stop()
        if report is not None:
            report.close()
    print_summary(out, result)
    print_failures(out, result, errors_path=run.errors)
    code = EXIT_OK if result.ok else EXIT_FAILED
    summary_file(code, "complete", result, None)
    say_report_rows(run.errors, report.count if report is not None else 0)
    return code
