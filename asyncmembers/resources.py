"""The Instance Members resource: argument checks, models in and out.

Keyword names are the documented API's (camelCase), so code written against the official
client's docs reads the same here. Every argument is validated before anything is sent.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs

from . import _schema
from ._session import AttemptGate, Session
from .errors import LosantError, ValidationError
from .models import InstanceMember, InstanceMemberPost, InstanceMembers, MemberLike, converter

__all__ = ["InstanceMembersResource"]

T = TypeVar("T")


def _members_path(instance_id: object) -> str:
    # Validating the ObjectId also means nothing can be injected into the path.
    return f"/instances/{_schema.check_object_id(instance_id, 'instanceId')}/members"


def _optional_str(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)


class InstanceMembersResource:
    """``client.instance_members``: list and add the members of a Losant instance."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def get(
        self,
        *,
        instanceId: str,
        sortField: str | None = None,
        sortDirection: str | None = None,
        filterField: str | None = None,
        filter: str | None = None,
        losantdomain: str | None = None,
    ) -> InstanceMembers:
        """List the instance's members, optionally sorted and filtered.

        ``sortField`` and ``filterField`` take ``email`` or ``role``; ``sortDirection``
        takes ``asc`` or ``desc``; ``filter`` is a glob (``*``, ``?``) matched
        case-insensitively against ``filterField``. Raises ``NotFoundError`` for an unknown
        instance.
        """
        path = _members_path(instanceId)
        _schema.check_list_query(sortField, sortDirection, filterField)
        _optional_str(filter, "filter")
        _schema.check_header_value(losantdomain, "losantdomain")
        params: dict[str, str] = {}
        if sortField is not None:
            params["sortField"] = sortField
        if sortDirection is not None:
            params["sortDirection"] = sortDirection
        if filterField:
            params["filterField"] = filterField
        if filter:
            params["filter"] = filter
        data = await self._session.request("GET", path, params=params, losantdomain=losantdomain)
        return _structure(data, InstanceMembers, "GET", path)

    async def post(
        self,
        *,
        instanceId: str,
        member: MemberLike,
        losantdomain: str | None = None,
    ) -> InstanceMember:
        """Add a member (``{"email" or "userId", "role"}``) and return it.

        Safe to retry: after an ambiguous failure (connection cut or timeout after sending)
        the client checks whether the member now exists before sending again, and returns
        that member rather than adding it twice. A user who was already a member before
        this call is a ``BadRequestError`` whose ``already_member`` is True.
        """
        path = _members_path(instanceId)
        post = InstanceMemberPost.coerce(member)
        _schema.check_header_value(losantdomain, "losantdomain")
        return await self.add(path, post, losantdomain=losantdomain)

    async def add(
        self,
        path: str,
        post: InstanceMemberPost,
        *,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
    ) -> InstanceMember:
        """Add an already validated member at ``path`` and return it as a model."""
        data = await self.add_raw(path, post, losantdomain=losantdomain, gate=gate)
        return _structure(data, InstanceMember, "POST", path)

    async def add_raw(
        self,
        path: str,
        post: InstanceMemberPost,
        *,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
    ) -> Any:
        """Add a member and return the answer in wire form (internal: ``bulk_import``'s path,
        which has no use for the model and so skips building it)."""

        async def confirm(deadline: float) -> Any:
            return await self._find(path, post, losantdomain, gate, deadline)

        return await self._session.request(
            "POST",
            path,
            body=post.to_wire(),
            losantdomain=losantdomain,
            gate=gate,
            confirm=confirm,
        )

    async def list_raw(
        self, path: str, *, losantdomain: str | None = None, gate: AttemptGate | None = None
    ) -> list[dict[str, Any]]:
        """Every member at ``path`` in wire form (internal: the importer's one up-front GET)."""
        data = await self._session.request("GET", path, losantdomain=losantdomain, gate=gate)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise LosantError(
                f"the server's answer does not look like InstanceMembers: {str(data)[:200]}",
                data=data,
                method="GET",
                path=path,
            )
        return [item for item in items if isinstance(item, dict)]

    async def _find(
        self,
        path: str,
        post: InstanceMemberPost,
        losantdomain: str | None,
        gate: AttemptGate | None,
        deadline: float,
    ) -> dict[str, Any] | None:
        """The wire form of the member matching ``post`` if the instance has it, else None."""
        params: dict[str, str] = {}
        if post.email is not None and post.user_id is None:
            # The filter is a glob; a "*" or "?" in the address only widens the match,
            # and the exact comparison below narrows it again.
            params = {"filterField": "email", "filter": post.email}
        data = await self._session.request(
            "GET", path, params=params, losantdomain=losantdomain, gate=gate, deadline=deadline
        )
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return None
        # ObjectIds, like emails, compare case-insensitively: the API answers with the
        # id in its own (lower) case, whatever case the caller wrote it in.
        email = post.email.lower() if post.email is not None else None
        user_id = post.user_id.lower() if post.user_id is not None else None
        for item in items:
            if not isinstance(item, dict):
                continue
            item_id = item.get("userId")
            if user_id is not None and isinstance(item_id, str) and item_id.lower() == user_id:
                return item
            item_email = item.get("email")
            if email is not None and isinstance(item_email, str) and item_email.lower() == email:
                return item
        return None


def _structure(data: Any, cls: type[T], method: str, path: str) -> T:
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, AttributeError) as exc:
        raise LosantError(
            f"the server's answer does not look like {cls.__name__}: {str(data)[:200]}",
            data=data,
            method=method,
            path=path,
        ) from exc
