"""The Instance Members resources: argument checks, models in and out, and member rules.

``client.instance_members`` is the collection (list, add); ``client.instance_member`` is
one member (get, change role, remove). Keyword names are the documented API's
(camelCase), so code written against the official client's docs reads the same here.
Every argument is validated before anything is sent, and every success is checked for
what it claims before it is believed (a POST's answer must be the member that was sent).

The ``*_raw`` methods are the internal interface of the bulk engine: already-validated
paths in, wire-form dicts out, no models built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from . import _schema
from ._session import AttemptGate, Session
from ._streaming import iter_members
from ._transport import Request
from .errors import BadRequestError, LosantError, NotFoundError, ProtocolError, ValidationError
from .models import (
    InstanceMember,
    InstanceMemberPatch,
    InstanceMemberPost,
    InstanceMembers,
    MemberLike,
    structure,
)

__all__ = [
    "InstanceMemberResource",
    "InstanceMembersResource",
    "member_path",
    "members_path",
]

T = TypeVar("T")

#: Receives the current members as an async iterator of wire-form dicts (``scan_raw``).
Consume = Callable[[AsyncIterator[dict[str, Any]]], Awaitable[T]]


def members_path(instance_id: object) -> str:
    """``/instances/{instanceId}/members``, with the ObjectId validated."""
    # Validating the ObjectId also means nothing can be injected into the path.
    return f"/instances/{_schema.check_object_id(instance_id, 'instanceId')}/members"


def member_path(instance_id: object, user_id: object) -> str:
    """``/instances/{instanceId}/members/{userId}``, with both ObjectIds validated."""
    return f"{members_path(instance_id)}/{_schema.check_object_id(user_id, 'userId')}"


def _optional_str(value: object, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)


def _same(a: object, b: str | None) -> bool:
    # ObjectIds, like emails, compare case-insensitively: the API answers with the id in
    # its own (lower) case, whatever case the caller wrote it in. Both are trimmed, as a
    # row's are: the member table (bulk._digest) matches listed members the same way.
    if b is None or not isinstance(a, str):
        return False
    # The same text (the usual answer) needs no trimming or lower-casing to tell.
    return a == b or a.strip().lower() == b.strip().lower()


def _check_added_role(data: dict[str, Any], role: str, path: str) -> None:
    """Raise :class:`ProtocolError` when a POST's answer (the member sent) has another role.

    The member was added, but not as asked: a success only in name. It is reported (the
    member exists, with the server's role), never counted added. An answer without a
    role is let pass (the Instance Member schema makes every property optional).
    """
    answered = data.get("role")
    if answered is not None and answered != role:
        raise ProtocolError(
            f"200: the server added the member with role {_show(answered)}, not {role} as "
            f"the POST asked; it is a member with that role now (change it with "
            f"instance_member.patch, or import --update-roles)",
            status=200,
            data=data,
            method="POST",
            path=path,
        )


def is_member(item: object, email: str | None, user_id: str | None) -> bool:
    """True when ``item`` (wire form) is the member with ``user_id`` or ``email``."""
    if not isinstance(item, dict):
        return False
    # Only the fields the row names are compared (_same is False for None).
    return (user_id is not None and _same(item.get("userId"), user_id)) or (
        email is not None and _same(item.get("email"), email)
    )


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
        case-insensitively against ``filterField``, which defaults to ``email`` when a
        ``filter`` is given without it (as on the command line; the API itself would
        ignore such a filter). Raises ``NotFoundError`` for an unknown instance.
        """
        path = members_path(instanceId)
        _schema.check_list_query(sortField, sortDirection, filterField)
        _optional_str(filter, "filter")
        _schema.check_header_value(losantdomain, "losantdomain")
        params: dict[str, str] = {}
        if sortField is not None:
            params["sortField"] = sortField
        if sortDirection is not None:
            params["sortDirection"] = sortDirection
        if filter:
            params["filterField"] = filterField or "email"
            params["filter"] = filter
        elif filterField:
            params["filterField"] = filterField
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

        Safe to retry: after an ambiguous failure (a 5xx, a connection cut or a timeout)
        the client checks whether the member now exists before sending again, and returns
        that member rather than adding it twice. A user who was already a member before
        this call is a ``BadRequestError`` whose ``already_member`` is True.
        """
        path = members_path(instanceId)
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
    ) -> dict[str, Any]:
        """Add a member and return the answer in wire form, verified to be that member.

        The POST is sent under the confirm-before-resend rule (:class:`_SafePost`). A user
        who was a member before raises ``BadRequestError`` with ``already_member`` True.
        An answer that is the member with another role than the one sent raises
        :class:`ProtocolError` (the member was added, not as asked).
        """
        # The first attempt is the whole call for nearly every row: it is sent here, with
        # nothing built for the cases that need more. A failure, or an answer that is not
        # the member sent, hands the call to _SafePost, which owns the POST rule.
        session = self._session
        body = post.to_wire()  # its "role" is the role sent (Role.value is no plain read)
        req = session.build("POST", path, body=body, losantdomain=losantdomain)
        deadline = session.deadline()
        try:
            data = await session.send(req, gate, deadline)
        except LosantError as exc:
            return await _SafePost(self, req, post, losantdomain, gate).after(exc, deadline)
        if is_member(data, post.email, post.user_id):
            _check_added_role(data, body["role"], path)
            return data  # type: ignore[no-any-return]
        return await _SafePost(self, req, post, losantdomain, gate).unexpected(data, deadline)

    async def list_raw(
        self, path: str, *, losantdomain: str | None = None, gate: AttemptGate | None = None
    ) -> list[dict[str, Any]]:
        """Every member at ``path`` in wire form, as one list (prefer :meth:`scan_raw`)."""

        async def collect(items: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
            return [item async for item in items]

        return await self.scan_raw(path, collect, losantdomain=losantdomain, gate=gate)

    async def scan_raw(
        self,
        path: str,
        consume: Consume[T],
        *,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
        deadline: float | None = None,
    ) -> T:
        """GET every member at ``path`` and feed them, parsed as they arrive, to ``consume``.

        ``consume`` receives an async iterator of wire-form member dicts parsed
        incrementally from the streamed body (neither the body nor the list is held
        whole); non-object items are skipped; its return value is returned. The response
        byte cap applies. If the attempt fails retryably part-way, ``consume`` is called
        again from the start, so it must reset its own state when it starts.
        """

        async def read(chunks: AsyncIterator[bytes]) -> T:
            items = iter_members(chunks, path, self._session.transport)
            try:
                return await consume(items)
            finally:
                await items.aclose()

        result: T = await self._session.request(
            "GET", path, losantdomain=losantdomain, gate=gate, reader=read, deadline=deadline
        )
        return result

    async def find_raw(
        self,
        path: str,
        *,
        email: str | None = None,
        user_id: str | None = None,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any] | None:
        """The member with ``email`` (case-insensitively) or ``user_id``, or None if absent.

        By email it is one filtered GET; by userId alone, one streamed scan of the list.
        """
        if email is None and user_id is None:
            raise ValidationError("find_raw needs an email or a userId", field="email")
        if email is not None:
            # The filter is a glob; a "*" or "?" in the address only widens the match,
            # and the exact comparison below narrows it again.
            data = await self._session.request(
                "GET",
                path,
                params={"filterField": "email", "filter": email},
                losantdomain=losantdomain,
                gate=gate,
                deadline=deadline,
            )
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ProtocolError(
                    f"the server's answer does not look like InstanceMembers: {_show(data)}",
                    status=200,
                    data=data,
                    method="GET",
                    path=path,
                )
            for item in items:
                if is_member(item, email, user_id):
                    return item  # type: ignore[no-any-return]
            if user_id is None:
                return None

        async def first_match(items: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
            async for item in items:
                if is_member(item, email, user_id):
                    return item
            return None

        return await self.scan_raw(
            path, first_match, losantdomain=losantdomain, gate=gate, deadline=deadline
        )


class _SafePost:
    """The POST safety rule, in one place: a member is never added twice, and never
    counted added unless the server shows it.

    - A failure that proves nothing was applied (a 429, a 4xx other than 408, a refused
      connection) lets the POST be resent as it is.
    - After a failure that may have been applied (any 5xx, 408, a cut, a timeout), the
      member is looked up before anything is resent; if it is there, that is the answer.
    - A 400 "already a member" after such a failure is the earlier attempt's success.
    - A 200 whose body is not the member sent is believed only if a lookup shows it.
    - Giving up after a failure that may have been applied, the member is looked up once
      more; the error raised is the POST's (never the lookup's), and says it may have been
      applied.
    """

    __slots__ = (
        "ambiguous",
        "email",
        "gate",
        "last_post",
        "losantdomain",
        "path",
        "post_answer",
        "req",
        "resource",
        "role",
        "user_id",
    )

    def __init__(
        self,
        resource: InstanceMembersResource,
        req: Request,
        post: InstanceMemberPost,
        losantdomain: str | None,
        gate: AttemptGate | None,
    ) -> None:
        self.resource = resource
        self.req = req
        self.path = req.path
        self.email = post.email
        self.user_id = post.user_id
        self.role = post.role.value
        self.losantdomain = losantdomain
        self.gate = gate
        #: The first failure that may have been applied, once there is one.
        self.ambiguous: LosantError | None = None
        #: The latest failure of the POST itself (what a give-up reports).
        self.last_post: LosantError | None = None
        #: The latest answer of the POST itself (not of a lookup), once there is one.
        self.post_answer: Any = None

    async def after(self, first: LosantError, deadline: float) -> dict[str, Any]:
        """The rest of the call after the first attempt failed with ``first``."""
        self._failed(first)
        try:
            data = await self.resource._session.retry_after(
                first, self.req, self.gate, deadline, safe=self
            )
        except LosantError as exc:
            if self.ambiguous is None or exc.fatal:
                raise
            try:
                found = await self._lookup(deadline)
            except LosantError as lookup_error:
                raise self._gave_up(exc, lookup_error) from exc
            if found is not None:
                return found
            raise self._gave_up(exc, None) from exc
        if is_member(data, self.email, self.user_id):
            if data is self.post_answer:
                # A lookup's member may hold a role it had before; the POST's must be ours.
                _check_added_role(data, self.role, self.path)
            return data  # type: ignore[no-any-return]
        return await self.unexpected(data, deadline)

    async def unexpected(self, data: Any, deadline: float) -> dict[str, Any]:
        """A success that is not the member sent (a list, another user, a proxy's page):
        believed only if a lookup finds the member."""
        found = await self._lookup_quietly(deadline)
        if found is not None:
            return found
        raise ProtocolError(
            "200: the server answered the POST with something other than the member sent "
            f"({_show(data)}), and a lookup does not find the member; it was not added",
            status=200,
            data=data,
            method="POST",
            path=self.path,
        )

    def _failed(self, exc: LosantError) -> None:
        self.last_post = exc
        if self.ambiguous is None and exc.may_have_been_applied:
            self.ambiguous = exc

    async def attempt(self, deadline: float) -> Any:
        """One attempt of the POST, confirming first when an earlier one may have applied."""
        if self.ambiguous is not None:
            found = await self._lookup(deadline)
            if found is not None:
                return found
        try:
            self.post_answer = await self.resource._session.send(self.req, self.gate, deadline)
            return self.post_answer
        except BadRequestError:
            # "Already a member" after an attempt that may have been applied: the earlier
            # attempt may be why. Look before reporting failure.
            if self.ambiguous is not None:
                found = await self._lookup(deadline)
                if found is not None:
                    return found
            raise
        except LosantError as exc:
            self._failed(exc)
            raise

    async def _lookup(self, deadline: float) -> dict[str, Any] | None:
        return await self.resource.find_raw(
            self.path,
            email=self.email,
            user_id=self.user_id,
            losantdomain=self.losantdomain,
            gate=self.gate,
            deadline=deadline,
        )

    async def _lookup_quietly(self, deadline: float) -> dict[str, Any] | None:
        try:
            return await self._lookup(deadline)
        except LosantError:
            return None

    def _gave_up(self, exc: LosantError, lookup_error: LosantError | None) -> LosantError:
        """The error to raise when the POST is given up after an ambiguous attempt.

        ``exc`` is what ended the retries (a POST's error, or a confirming lookup's);
        ``lookup_error`` is the last lookup's failure, None if it answered "not there".
        The error is always the POST's: when no lookup could tell, it says the POST may
        have been applied, whatever the POST's own answer was (a 5xx says nothing of it).
        """
        post = exc if exc.method == "POST" else self.last_post
        assert post is not None
        attempts = exc.attempts if exc.attempts is not None else post.attempts
        message = post.message
        if lookup_error is not None:
            if not post.may_have_been_applied:
                # A 429 or a refused connection last, after an earlier ambiguous attempt.
                message = f"{message}; an earlier attempt may have been applied"
            elif "may have been applied" not in message:
                message = f"{message}; the request may have been applied"
            failed = exc if exc is not post else lookup_error
            message = f"{message} (the lookup to confirm it failed too: {failed.message})"
        elif post is not exc:
            message = f"{message}; a lookup shows the member was not added"
        elif not post.may_have_been_applied:
            message = f"{message}; an earlier attempt may have been applied"
        if message == post.message and attempts == post.attempts:
            return post
        return post.evolve(
            message=message,
            attempts=attempts,
            earlier_attempt_applied=post.earlier_attempt_applied or not post._applied(),
        )


class InstanceMemberResource:
    """``client.instance_member``: get, change the role of, or remove one member."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def get(
        self, *, instanceId: str, userId: str, losantdomain: str | None = None
    ) -> InstanceMember:
        """The member ``userId`` of the instance. ``NotFoundError`` if there is none."""
        path = member_path(instanceId, userId)
        _schema.check_header_value(losantdomain, "losantdomain")
        data = await self._session.request("GET", path, losantdomain=losantdomain)
        if not isinstance(data, dict) or ("userId" in data and not _same(data["userId"], userId)):
            raise ProtocolError(
                f"200: the server's answer is not member {userId}: {_show(data)}",
                status=200,
                data=data,
                method="GET",
                path=path,
            )
        return _structure(data, InstanceMember, "GET", path)

    async def patch(
        self,
        *,
        instanceId: str,
        userId: str,
        member: InstanceMemberPatch | Mapping[str, Any],
        losantdomain: str | None = None,
    ) -> InstanceMember:
        """Change the member's role (``member={"role": "admin"}``) and return the member.

        Idempotent, so retried like a GET. ``NotFoundError`` if there is no such member.
        """
        path = member_path(instanceId, userId)
        change = InstanceMemberPatch.coerce(member)
        _schema.check_header_value(losantdomain, "losantdomain")
        data = await self.patch_raw(path, change.role.value, losantdomain=losantdomain)
        return _structure(data, InstanceMember, "PATCH", path)

    async def delete(
        self, *, instanceId: str, userId: str, losantdomain: str | None = None
    ) -> None:
        """Remove the member from the instance.

        Idempotent, so retried like a GET; a 404 that answers a retry after an ambiguous
        attempt (a cut, a timeout, a 5xx) means the earlier attempt removed it, and is
        success. A 404 otherwise is ``NotFoundError``.
        """
        path = member_path(instanceId, userId)
        _schema.check_header_value(losantdomain, "losantdomain")
        await self.delete_raw(path, losantdomain=losantdomain)

    async def patch_raw(
        self,
        path: str,
        role: str,
        *,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
    ) -> dict[str, Any]:
        """PATCH ``{"role": role}`` at the member ``path``; return the verified answer.

        The answer must be a member whose role is ``role`` (and whose userId, if given, is
        the path's), else :class:`ProtocolError`.
        """
        data = await self._session.request(
            "PATCH", path, body={"role": role}, losantdomain=losantdomain, gate=gate
        )
        user_id = path.rsplit("/", 1)[-1]
        if (
            not isinstance(data, dict)
            or data.get("role") != role
            or ("userId" in data and not _same(data["userId"], user_id))
        ):
            raise ProtocolError(
                f"200: the server's answer to the role change is not the member with role "
                f"{role}: {_show(data)}",
                status=200,
                data=data,
                method="PATCH",
                path=path,
            )
        return data

    async def delete_raw(
        self,
        path: str,
        *,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
        gone_ok: bool = False,
    ) -> None:
        """DELETE the member at ``path``; the answer must be ``{"success": true}``.

        A 404 after an ambiguous earlier attempt is success. With ``gone_ok=True`` (the
        caller read the member as present in this run) any 404 is success: aiohttp resends
        a DELETE once by itself when a reused connection is cut, so the server's first
        answer we see may already be "not found" for a removal it applied.
        """
        try:
            data = await self._session.request(
                "DELETE", path, losantdomain=losantdomain, gate=gate, absent_ok=True
            )
        except NotFoundError:
            if gone_ok:
                return
            raise
        if data is None:
            return  # 404 after an ambiguous attempt: that attempt removed the member
        if not isinstance(data, dict) or data.get("success") is not True:
            raise ProtocolError(
                f'200: the server\'s answer to the removal is not {{"success": true}}: '
                f"{_show(data)}",
                status=200,
                data=data,
                method="DELETE",
                path=path,
            )


def _show(data: object) -> str:
    text = str(data)
    return text if len(text) <= 200 else text[:197] + "..."


def _structure(data: Any, cls: type[T], method: str, path: str) -> T:
    try:
        return structure(data, cls)
    except ValidationError as exc:
        raise ProtocolError(
            f"the server's answer does not look like {cls.__name__}: {_show(data)}",
            status=200,
            data=data,
            method=method,
            path=path,
        ) from exc.__cause__
