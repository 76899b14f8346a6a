"""``asyncmembers add``: add one member to an instance."""

from __future__ import annotations

import click

from ...client import Client
from ...errors import BadRequestError, ValidationError
from ...models import InstanceMember, InstanceMemberPost
from .._app import api_options
from .._common import EXIT_OK, GlobalOptions, ObjectIdType, fail, finish, instance_option, run_async

__all__ = ["add"]


async def _add(
    client: Client, *, instance_id: str, member: InstanceMemberPost, losantdomain: str | None
) -> InstanceMember | None:
    """The new member, or ``None`` if the user already was one."""
    async with client:
        try:
            return await client.instance_members.post(
                instanceId=instance_id, member=member, losantdomain=losantdomain
            )
        except BadRequestError as exc:
            if exc.already_member:
                return None
            raise


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
@api_options
def add(
    options: GlobalOptions,
    instance_id: str,
    email: str | None,
    user_id: str | None,
    role: str,
) -> None:
    """Add one member to an instance, by --email or by --user-id.

    A user who is already a member is left as is (exit status 0, as import skips them).

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
    added = run_async(
        _add(client, instance_id=instance_id, member=member, losantdomain=options.losantdomain)
    )
    if added is None:
        click.echo(f"{who} is already a member of instance {instance_id}; nothing to do.")
    else:
        ids = f" (userId {added.user_id})" if added.user_id and email is not None else ""
        role_name = getattr(added.role, "value", added.role) or member.role.value
        click.echo(f"Added {who}{ids} to instance {instance_id} as {role_name}.")
    finish(EXIT_OK)
