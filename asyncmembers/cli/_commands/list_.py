"""``asyncmembers list``: the members of an instance, as a table, JSON or CSV."""

from __future__ import annotations

import sys

import click

from ...client import Client
from ...models import InstanceMembers
from .._app import api_options
from .._common import EXIT_OK, GlobalOptions, finish, instance_option, is_terminal, run_async
from .._output import out_console, print_members_table, write_members_csv, write_members_json

__all__ = ["list_members"]


async def _fetch(
    client: Client,
    *,
    instance_id: str,
    sort_field: str | None,
    sort_direction: str | None,
    filter_field: str | None,
    pattern: str | None,
    losantdomain: str | None,
) -> InstanceMembers:
    async with client:
        return await client.instance_members.get(
            instanceId=instance_id,
            sortField=sort_field,
            sortDirection=sort_direction,
            filterField=filter_field,
            filter=pattern,
            losantdomain=losantdomain,
        )


@click.command("list")
@instance_option
@click.option(
    "--sort-field",
    type=click.Choice(["email", "role"], case_sensitive=False),
    help="Sort by this field (server default: email).",
)
@click.option(
    "--sort-direction",
    type=click.Choice(["asc", "desc"], case_sensitive=False),
    help="Sort direction (server default: asc).",
)
@click.option(
    "--filter-field",
    type=click.Choice(["email", "role"], case_sensitive=False),
    help="Field that --filter matches (default: email when --filter is given).",
)
@click.option(
    "--filter",
    "pattern",
    metavar="GLOB",
    help="Only members whose --filter-field matches this pattern (* and ?, any case).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"], case_sensitive=False),
    help="Output format. Default: table on a terminal, json when piped or redirected. "
    "csv has the columns import reads.",
)
@api_options
def list_members(
    options: GlobalOptions,
    instance_id: str,
    sort_field: str | None,
    sort_direction: str | None,
    filter_field: str | None,
    pattern: str | None,
    fmt: str | None,
) -> None:
    """List the members of an instance.

    \b
    Examples:
      asyncmembers list --instance 575ec8687ae143cd83dc4a97 --sort-field role
      asyncmembers list --instance 575ec8687ae143cd83dc4a97 --filter '*@example.com'
      asyncmembers list --instance 575ec8687ae143cd83dc4a97 --format csv > members.csv
    """
    if pattern and not filter_field:
        filter_field = "email"
    client = options.client()
    members = run_async(
        _fetch(
            client,
            instance_id=instance_id,
            sort_field=sort_field.lower() if sort_field else None,
            sort_direction=sort_direction.lower() if sort_direction else None,
            filter_field=filter_field.lower() if filter_field else None,
            pattern=pattern,
            losantdomain=options.losantdomain,
        )
    )
    fmt = (fmt or ("table" if is_terminal() else "json")).lower()
    if fmt == "json":
        write_members_json(members, sys.stdout)
    elif fmt == "csv":
        write_members_csv(members, sys.stdout)
    else:
        print_members_table(out_console(), members)
    finish(EXIT_OK)
