"""``asyncmembers add``: add one member to an instance."""

from __future__ import annotations

from typing import Any

import click

from ...client import Client
from ...errors import BadRequestError, ValidationError
from ...models import InstanceMember, InstanceMemberPost
from ...resources import members_path
from .._app import api_options
from .._common import EXIT_OK, GlobalOptions, ObjectIdType, fail, finish, instance_option, run_async

__all__ = ["add"]


async def _add(
    client: Client,
    *,
    instance_id: str,
    member: InstanceMemberPost,
    losantdomain: str | None,
    update_role: bool,
) -> tuple[str, InstanceMember | dict[str, Any] | None]:
    """What happened (added, unchanged, other-role, updated) and the member, if known."""
    async with client:
        try:
            added = await client.instance_members.post(
                instanceId=instance_id, member=member, losantdomain=losantdomain
            )
        except BadRequestError as exc:
            if not exc.already_member:
                raise
        else:
            return "added", added
        found = await client.instance_members.find_raw(
            members_path(instance_id),
            email=member.email,
            user_id=member.user_id,
            losantdomain=losantdomain,
        )
        if found is None:
            return "unchanged", None  # the server said so; it is gone again meanwhile
        role = found.get("role")
        if role == member.role.value:
            return "unchanged", found
        if not update_role or not isinstance(found.get("userId"), str):
            return "other-role", found
        patched = await client.instance_member.patch(
            instanceId=instance_id,
            userId=found["userId"],
            member={"role": member.role.value},
            losantdomain=losantdomain,
        )
        return "updated", {**found, "role": getattr(patched.role, "value", patched.role)}


@click.command("add")
@instance_option
@click.option("--email", metavar="EMAIL", help="The user's email address.")
@click.option(
    "--user-id", type=ObjectIdType("userId"), metavar="ID", help="The user's ID (24 hex digits)."
)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "view"], case_sensitive=False),
    help="The member's role.",
)
@click.option(
    "--update-role",
    is_flag=True,
    help="If the user is already a member with another role, change it to --role.",
)
@api_options
def add(
    options: GlobalOptions,
    instance_id: str,
    email: str | None,
    user_id: str | None,
    role: str,
    update_role: bool,
) -> None:
    """Add one member to an instance, by --email or by --user-id.

    A user who is already a member is left as is and the command says so, naming the
    member's role (exit status 0, as import skips them); with --update-role a member
    whose role differs gets --role.

    \b
    Example:
      asyncmembers add --instance 575ec8687ae143cd83dc4a97 --email ada@example.com --role view
    """
    if (email is None) == (user_id is None):
        raise click.UsageError("give exactly one of --email or --user-id")
    try:
        member = InstanceMemberPost(role=role, email=email, user_id=user_id)
    except ValidationError as exc:
        fail(f"--{(exc.field or 'email').replace('user_id', 'user-id')}: {exc.message}")
    client = options.client()
    who = email if email is not None else f"user {user_id}"
    what, added = run_async(
        _add(
            client,
            instance_id=instance_id,
            member=member,
            losantdomain=options.losantdomain,
            update_role=update_role,
        )
    )
    if what == "unchanged":
        click.echo(
            f"{who} is already a member of instance {instance_id} with role "
            f"{member.role.value}; nothing to do."
        )
    elif what == "other-role":
        assert isinstance(added, dict)
        click.echo(
            f"{who} is already a member of instance {instance_id} with role {added.get('role')}; "
            f"left as is (pass --update-role to make it {member.role.value})."
        )
    elif what == "updated":
        click.echo(f"Changed the role of {who} in instance {instance_id} to {member.role.value}.")
    else:
        assert isinstance(added, InstanceMember)
        ids = f" (userId {added.user_id})" if added.user_id and email is not None else ""
        role_name = getattr(added.role, "value", added.role) or member.role.value
        click.echo(f"Added {who}{ids} to instance {instance_id} as {role_name}.")
    finish(EXIT_OK)
