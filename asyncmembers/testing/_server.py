"""The embedded Losant-compatible server: HTTP handling, lifecycle and the CLI runner.

Only the Instance Members resource (``/instances/{id}/members``) and the Instance Member
resource (``/instances/{id}/members/{userId}``) are served. The request path is kept lean
(precompiled checks from :mod:`asyncmembers._schema`, constant error bodies, cached list
answers built from per-member JSON) so that the server is not what limits a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import attrs
from aiohttp import web
from multidict import MultiMapping

from .. import _json
from .._schema import OBJECT_ID_RE, check_list_query, check_member_post
from ..errors import ValidationError
from ._faults import ERROR_STATUSES, FaultKind, FaultPlan, Faults, TokenBucket
from ._state import AlreadyMemberError, MemberStore, check_member_patch

__all__ = [
    "DEFAULT_INSTANCE_ID",
    "DEFAULT_TOKEN",
    "GET_SCOPES",
    "MEMBER_DELETE_SCOPES",
    "MEMBER_GET_SCOPES",
    "MEMBER_PATCH_SCOPES",
    "POST_SCOPES",
    "FakeLosantServer",
    "ServerStats",
    "serve_forever",
]

#: The token the pytest fixture (and a server built without ``tokens``) accepts.
DEFAULT_TOKEN: Final = "test-token"
#: The instance the pytest fixture (and a server built without ``instances``) serves.
DEFAULT_INSTANCE_ID: Final = "575ec8687ae143cd83dc4a97"

#: Scopes of which a token needs any one to list members.
GET_SCOPES: Final = frozenset(
    {
        "all.Instance",
        "all.Instance.read",
        "all.User",
        "all.User.read",
        "instanceMembers.*",
        "instanceMembers.get",
    }
)
#: Scopes of which a token needs any one to add a member.
POST_SCOPES: Final = frozenset(
    {"all.Instance", "all.User", "instanceMembers.*", "instanceMembers.post"}
)

#: Scopes of which a token needs any one to read one member.
MEMBER_GET_SCOPES: Final = frozenset(
    {
        "all.Instance",
        "all.Instance.read",
        "all.User",
        "all.User.read",
        "instanceMember.*",
        "instanceMember.get",
    }
)
#: Scopes of which a token needs any one to change a member's role.
MEMBER_PATCH_SCOPES: Final = frozenset(
    {"all.Instance", "all.User", "instanceMember.*", "instanceMember.patch"}
)
#: Scopes of which a token needs any one to remove a member.
MEMBER_DELETE_SCOPES: Final = frozenset(
    {"all.Instance", "all.User", "instanceMember.*", "instanceMember.delete"}
)
_MEMBER_SCOPES: Final = {
    "GET": MEMBER_GET_SCOPES,
    "PATCH": MEMBER_PATCH_SCOPES,
    "DELETE": MEMBER_DELETE_SCOPES,
}

_PATH: Final = "/instances/{instanceId}/members"
_MEMBER_PATH: Final = "/instances/{instanceId}/members/{userId}"
_LIST_PARAMS: Final = ("sortField", "sortDirection", "filterField", "filter")
_HEADERS: Final = {"Content-Type": "application/json; charset=utf-8"}
_body: Final = _json.dumps


def _error(type_: str, message: str) -> bytes:
    return _body({"type": type_, "message": message})


_UNAUTHORIZED: Final = _error("Unauthorized", "Unauthorized")
_FORBIDDEN: Final = _error(
    "Forbidden", "The access token does not have a scope that allows this action"
)
_INSTANCE_NOT_FOUND: Final = _error("NotFound", "Instance was not found")
_MEMBER_NOT_FOUND: Final = _error("NotFound", "Member was not found")
_SUCCESS: Final = _body({"success": True})
_ROUTE_NOT_FOUND: Final = _error("NotFound", "Route was not found")
_ALREADY_MEMBER: Final = _error("Validation", "User is already a member of this instance")
_BAD_JSON: Final = _error("Validation", "Request body must be a valid JSON object")
_TOO_LARGE: Final = _error("Validation", "Request body is too large")
_SERVER_ERRORS: Final = {
    500: _error("InternalError", "Internal server error"),
    502: _error("BadGateway", "Bad gateway"),
    503: _error("ServiceUnavailable", "Service unavailable"),
    504: _error("GatewayTimeout", "Gateway timeout"),
}
assert set(_SERVER_ERRORS) == set(ERROR_STATUSES)

_NO_BODY: Final = object()
_LIST_CACHE_SIZE: Final = 32
# Listing bodies kept per instance, in bytes: a few listings of a 200k-member instance
# (about 55 MB each) fit, 32 of them would not.
_LIST_CACHE_BYTES: Final = 256 * 2**20


@attrs.define
class ServerStats:
    """Counters of what the server saw and did, for assertions in tests.

    - ``requests``: every request received, answered or not.
    - ``by_method``: the same, by HTTP method (``"GET"``, ``"POST"``, ``"PATCH"``,
      ``"DELETE"``, ...), whatever the route.
    - ``by_status``: answers sent, by HTTP status (a cut connection sends none).
    - ``posts_applied``: members added through the API (not through ``add_member``).
    - ``patches_applied``: PATCHes of an existing member applied (whether or not the role
      differed), including those whose answer was then cut.
    - ``deletes_applied``: members removed through the API, including those whose answer
      was then cut.
    - ``faults``: injected faults by kind (:class:`FaultKind` values, e.g. ``"error"``,
      ``"rate_limit"``, ``"drop_after_commit"``).
    """

    requests: int = 0
    by_method: Counter[str] = attrs.field(factory=Counter)
    by_status: Counter[int] = attrs.field(factory=Counter)
    posts_applied: int = 0
    patches_applied: int = 0
    deletes_applied: int = 0
    faults: Counter[str] = attrs.field(factory=Counter)

    @property
    def changes_applied(self) -> int:
        """Every change the API applied: posts, patches and deletes."""
        return self.posts_applied + self.patches_applied + self.deletes_applied


def _bearer(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _loopback_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"  # "localhost" may resolve to two addresses, and so two ports
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"FakeLosantServer listens on loopback only; got host={host!r}. "
            "Use 127.0.0.1, ::1 or localhost."
        )
    return host


def _check_tokens(tokens: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for token, scopes in tokens.items():
        if not isinstance(token, str) or not token or token != token.strip():
            raise ValueError("each token must be a non-empty string without surrounding spaces")
        if isinstance(scopes, str):
            raise TypeError(
                f"the scopes of a token must be a list of scope names, not the string {scopes!r}; "
                f"write [{scopes!r}]"
            )
        out[token] = frozenset(scopes)
    return out


class FakeLosantServer:
    """A Losant Platform API look-alike for instance members, on loopback.

    It serves ``GET`` and ``POST /instances/{instanceId}/members`` (list, add) and
    ``GET``, ``PATCH`` and ``DELETE /instances/{instanceId}/members/{userId}`` (read one,
    change its role, remove it), with the API's scopes, answers and errors.

    Real HTTP over a real socket (aiohttp.web). Use it as an async context manager, or
    call :meth:`start` and :meth:`close`::

        async with FakeLosantServer(tokens={"secret-token": ["all.Instance"]},
                                    instances=["575ec8687ae143cd83dc4a97"]) as server:
            ...  # point a client at server.url

    Arguments (all keyword-only):

    - ``tokens``: access token -> scopes. Default ``{"test-token": ["all.Instance"]}``.
    - ``instances``: the instance ids that exist. Default ``["575ec8687ae143cd83dc4a97"]``.
    - ``faults``: a :class:`Faults`; default none. Can be replaced later via ``faults``.
    - ``seed``: makes fault decisions and generated user ids reproducible.
    - ``host``, ``port``: where to listen; ``host`` must be a loopback address (else
      :class:`ValueError`); port 0 picks a free port (read it from ``url``).
    - ``users``: users the directory knows from the start, as mappings with ``userId``
      and/or ``email`` and optional ``firstName``, ``lastName``, ``avatarUrl``.

    The user directory resolves every post to one user: a known ``userId`` first, then a
    known ``email`` (case-insensitively). An unknown email becomes a new user whose
    ObjectId is derived from ``seed`` and the email (so the same seed gives the same ids).
    An unknown ``userId`` becomes a placeholder user with that id and no email (and so no
    ``email`` field in its member objects); if the post also gives an email, the new user
    gets it. Adding a user who is already a member of the instance answers 400
    ``Validation`` "User is already a member of this instance".

    On ``/members/{userId}``, the checks go: token (401, 403), instance (404 "Instance
    was not found"), body of a PATCH (400 ``Validation``), member (404 "Member was not
    found"). A PATCH answers the modified member, a DELETE ``{"success": true}``.

    Answers carry a ``_links`` field, as the real API's do; clients must ignore it.
    Instance ids and user ids are kept in lower case and compared in any case (in paths
    and bodies). Query parameters the API does not
    define (such as the official clients' ``_actions``, ``_links``, ``_embedded``) and the
    ``Accept-Version`` and ``losantdomain`` headers are ignored.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, Iterable[str]] | None = None,
        instances: Iterable[str] | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        if tokens is None:
            tokens = {DEFAULT_TOKEN: ["all.Instance"]}
        if instances is None:
            instances = [DEFAULT_INSTANCE_ID]
        if isinstance(instances, str):
            raise TypeError(f"instances must be a list of instance ids; write [{instances!r}]")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        self._host = _loopback_host(host)
        self._port = port
        self._tokens = _check_tokens(tokens)
        self._seed = seed
        self._store = MemberStore(instances, seed=seed, users=users or ())
        self._faults = Faults()
        self._plan: FaultPlan | None = None
        self._bucket: TokenBucket | None = None
        self.faults = faults if faults is not None else Faults()
        self._stats = ServerStats()
        # (instance id) -> {(sortField, sortDirection, filterField, filter): body}
        self._list_cache: dict[str, dict[tuple[str, str, str, str], bytes]] = {}
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._url: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<FakeLosantServer {where} instances={len(self._store.instances)}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start serving. A server starts once."""
        if self._runner is not None or self._closed:
            raise RuntimeError("FakeLosantServer.start() may be called once per server")
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_get(_PATH, self._handle_members, allow_head=False)
        app.router.add_post(_PATH, self._handle_members)
        app.router.add_get(_MEMBER_PATH, self._handle_member, allow_head=False)
        app.router.add_patch(_MEMBER_PATH, self._handle_member)
        app.router.add_delete(_MEMBER_PATH, self._handle_member)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # Handlers end promptly on close (stalls and latency wait on _closing), so the
        # shutdown timeout is only a backstop.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop serving: cut stalled requests, close connections, free the port."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            self._closing.set()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what tests use ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``; available once started."""
        if self._url is None:
            raise RuntimeError("the server has no URL until it is started")
        return self._url

    @property
    def token(self) -> str:
        """The first configured access token (``"test-token"`` by default)."""
        return next(iter(self._tokens))

    @property
    def instance_id(self) -> str:
        """The first configured instance id."""
        return self._store.instances[0]

    @property
    def instances(self) -> list[str]:
        """The ids of the instances that exist."""
        return self._store.instances

    @property
    def faults(self) -> Faults:
        """The faults in force. Assigning new ones restarts the fault plan and bucket."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults instance, got {type(faults).__name__}")
        self._faults = faults
        self._plan = FaultPlan(faults, self._seed) if faults.random else None
        if faults.rate_limit > 0:
            burst = faults.rate_limit_burst or max(1.0, faults.rate_limit)
            self._bucket = TokenBucket(faults.rate_limit, burst, time.monotonic())
        else:
            self._bucket = None

    @property
    def stats(self) -> ServerStats:
        """The live counters (see :class:`ServerStats`)."""
        return self._stats

    def reset_stats(self) -> ServerStats:
        """Start new counters; return the old ones. Read ``stats`` again afterwards."""
        old, self._stats = self._stats, ServerStats()
        return old

    def members(self, instance_id: str) -> list[dict[str, Any]]:
        """The server's truth: the instance's members in wire form (a copy), oldest first.

        Raises :class:`KeyError` for an unknown instance.
        """
        if not self._store.has_instance(instance_id):
            raise KeyError(f"no instance {instance_id!r}; known: {self._store.instances}")
        return self._store.members(instance_id)

    def add_instance(self, instance_id: str) -> None:
        """Create an empty instance (a no-op if it exists)."""
        self._store.add_instance(instance_id)

    def add_member(
        self,
        instance_id: str,
        *,
        email: str | None = None,
        user_id: str | None = None,
        role: str = "view",
    ) -> dict[str, Any]:
        """Make a user a member directly, without HTTP or faults; return it in wire form.

        The same rules as a POST apply: :class:`ValueError` for an invalid member or a
        user who is already a member, :class:`KeyError` for an unknown instance.
        """
        body: dict[str, str] = {"role": role}
        if email is not None:
            body["email"] = email
        if user_id is not None:
            body["userId"] = user_id
        post = check_member_post(body)
        if not self._store.has_instance(instance_id):
            raise KeyError(f"no instance {instance_id!r}; known: {self._store.instances}")
        try:
            member = self._store.add_member(instance_id, post)
        except AlreadyMemberError as exc:
            raise ValueError(f"{exc} ({email or user_id})") from None
        self._list_cache.pop(instance_id.lower(), None)
        return member

    def add_members(
        self, instance_id: str, members: Iterable[Mapping[str, Any]], *, role: str = "view"
    ) -> int:
        """Make many users members directly, all or none; return how many were added.

        For seeding large instances fast (200k members in about a second)::

            server.add_members(iid, ({"email": f"u{i}@example.com"} for i in range(200_000)))

        Each row is a mapping with ``email`` and/or ``userId`` (resolved to a user as a
        POST is), an optional ``role`` (default ``role``) and, for a user the directory
        does not know yet, optional ``firstName``, ``lastName`` and ``avatarUrl``. No HTTP,
        no faults, not counted in ``stats``. Raises :class:`KeyError` for an unknown
        instance and :class:`ValueError` naming the row (0-based) that is invalid, names a
        user who is already a member, or names the same user as an earlier row; then
        nothing is added.
        """
        if not self._store.has_instance(instance_id):
            raise KeyError(f"no instance {instance_id!r}; known: {self._store.instances}")
        if isinstance(members, Mapping | str | bytes):
            raise TypeError("members must be an iterable of mappings, one per member")
        try:
            added = self._store.add_members(instance_id, members, role=role)
        except ValidationError as exc:
            raise ValueError(f"role: {exc.message}") from None
        self._list_cache.pop(instance_id.lower(), None)
        return added

    def member_count(self, instance_id: str) -> int:
        """How many members the instance has (cheaper than ``len(members(...))``).

        Raises :class:`KeyError` for an unknown instance.
        """
        if not self._store.has_instance(instance_id):
            raise KeyError(f"no instance {instance_id!r}; known: {self._store.instances}")
        return self._store.count(instance_id)

    # -- HTTP ----------------------------------------------------------------------------

    def _answer(
        self, status: int, body: bytes, headers: Mapping[str, str] = _HEADERS
    ) -> web.Response:
        self._stats.by_status[status] += 1
        return web.Response(status=status, body=body, headers=headers)

    @staticmethod
    def _cut(request: web.Request) -> web.Response:
        # Close the socket and hand aiohttp a response it cannot write: it sees the
        # connection reset, drops the response quietly and ends the connection's loop.
        # The client sees the connection closed with no answer (ServerDisconnectedError).
        request.protocol.force_close()
        return web.Response(status=500)

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the server closes; True if it is closing."""
        closing = self._closing
        assert closing is not None
        if closing.is_set():
            return True
        try:
            async with asyncio.timeout(seconds):
                await closing.wait()
        except TimeoutError:
            return False
        return True

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        self._stats.requests += 1
        return self._answer(404, _ROUTE_NOT_FOUND)

    async def _handle_members(self, request: web.Request) -> web.Response:
        return await self._serve(request, self._process)

    async def _handle_member(self, request: web.Request) -> web.Response:
        return await self._serve(request, self._process_member)

    async def _serve(
        self,
        request: web.Request,
        process: Callable[[web.Request, bytes, Any], tuple[int, bytes]],
    ) -> web.Response:
        """Read the body, meet the faults, then ``process`` the request (or not)."""
        stats = self._stats
        stats.requests += 1
        method = request.method
        stats.by_method[method] += 1
        faults = self._faults
        parsed: Any = _NO_BODY
        if method == "POST" or method == "PATCH":
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._answer(413, _TOO_LARGE)
            if raw:
                try:
                    parsed = json.loads(raw)
                except (ValueError, RecursionError):
                    parsed = _NO_BODY
        else:
            raw = b""

        if faults.latency > 0 and await self._pause(faults.latency):
            return self._cut(request)

        bucket = self._bucket
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            if wait > 0:
                stats.faults[FaultKind.RATE_LIMIT] += 1
                seconds = TokenBucket.retry_after(wait)
                return self._answer(
                    429,
                    _error("TooManyRequests", f"Too many requests; retry in {seconds} s"),
                    {**_HEADERS, "Retry-After": str(seconds)},
                )

        drop_after = False
        plan = self._plan
        if plan is not None:
            decision = plan.decide(method, request.path, _canonical(request, raw, parsed))
            if decision is not None:
                kind = decision.kind
                stats.faults[kind] += 1
                if kind is FaultKind.ERROR:
                    return self._answer(decision.status, _SERVER_ERRORS[decision.status])
                if kind is FaultKind.DROP_BEFORE_COMMIT:
                    return self._cut(request)
                if kind is FaultKind.STALL and await self._pause(faults.stall_seconds):
                    return self._cut(request)
                drop_after = kind is FaultKind.DROP_AFTER_COMMIT

        status, body = process(request, raw, parsed)
        if drop_after:
            return self._cut(request)
        return self._answer(status, body)

    def _authorise(self, request: web.Request, allowed: frozenset[str]) -> tuple[int, bytes] | None:
        """The 401 or 403 answer when the token is missing, unknown or lacks every scope."""
        scopes = self._tokens.get(_bearer(request.headers.get("Authorization")) or "")
        if scopes is None:
            return 401, _UNAUTHORIZED
        if scopes.isdisjoint(allowed):
            return 403, _FORBIDDEN
        return None

    def _instance(self, request: web.Request) -> str | None:
        """The path's instance id in lower case, or None if no such instance exists."""
        instance_id = request.match_info["instanceId"]
        if OBJECT_ID_RE.fullmatch(instance_id) is None or not self._store.has_instance(instance_id):
            return None
        return instance_id.lower()

    def _process(self, request: web.Request, raw: bytes, parsed: Any) -> tuple[int, bytes]:
        """Authorise and apply one collection request; synchronous, so it cannot interleave."""
        is_post = request.method == "POST"
        refused = self._authorise(request, POST_SCOPES if is_post else GET_SCOPES)
        if refused is not None:
            return refused
        instance_id = self._instance(request)
        if instance_id is None:
            return 404, _INSTANCE_NOT_FOUND
        if is_post:
            return self._post(instance_id, raw, parsed)
        return self._list(instance_id, request.query)

    def _process_member(self, request: web.Request, raw: bytes, parsed: Any) -> tuple[int, bytes]:
        """Authorise and apply one request on one member; synchronous, like :meth:`_process`."""
        method = request.method
        refused = self._authorise(request, _MEMBER_SCOPES[method])
        if refused is not None:
            return refused
        instance_id = self._instance(request)
        if instance_id is None:
            return 404, _INSTANCE_NOT_FOUND
        role = ""
        if method == "PATCH":
            if parsed is _NO_BODY:
                return 400, _BAD_JSON
            try:
                role = check_member_patch(parsed)
            except ValidationError as exc:
                return 400, _error("Validation", exc.message)
        user_id = request.match_info["userId"]
        if OBJECT_ID_RE.fullmatch(user_id) is None:
            return 404, _MEMBER_NOT_FOUND
        store = self._store
        if method == "DELETE":
            if not store.remove_member(instance_id, user_id):
                return 404, _MEMBER_NOT_FOUND
            self._stats.deletes_applied += 1
            self._list_cache.pop(instance_id, None)
            return 200, _SUCCESS
        if method == "PATCH":
            member = store.set_role(instance_id, user_id, role)
            if member is not None:
                self._stats.patches_applied += 1
                self._list_cache.pop(instance_id, None)
        else:
            member = store.get_member(instance_id, user_id)
        if member is None:
            return 404, _MEMBER_NOT_FOUND
        member["_links"] = {
            "self": {"href": f"/instances/{instance_id}/members/{member['userId']}"}
        }
        return 200, _body(member)

    def _post(self, instance_id: str, raw: bytes, parsed: Any) -> tuple[int, bytes]:
        if parsed is _NO_BODY:
            return 400, _BAD_JSON
        try:
            post = check_member_post(parsed)
        except ValidationError as exc:
            return 400, _error("Validation", exc.message)
        try:
            member = self._store.add_member(instance_id, post)
        except AlreadyMemberError:
            return 400, _ALREADY_MEMBER
        self._stats.posts_applied += 1
        self._list_cache.pop(instance_id, None)
        member["_links"] = {
            "self": {"href": f"/instances/{instance_id}/members/{member['userId']}"}
        }
        return 200, _body(member)

    def _list(self, instance_id: str, query: MultiMapping[str]) -> tuple[int, bytes]:
        values: list[str | None] = []
        for name in _LIST_PARAMS:
            given = query.getall(name, ())
            if len(given) > 1:
                return 400, _error("Validation", f"{name} may be given only once")
            values.append(given[0] if given else None)
        sort_field, sort_direction, filter_field, pattern = values
        try:
            check_list_query(sort_field, sort_direction, filter_field)
        except ValidationError as exc:
            return 400, _error("Validation", exc.message)
        sort_field = sort_field or "email"
        sort_direction = sort_direction or "asc"
        if not filter_field or not pattern:
            filter_field = pattern = ""
        key = (sort_field, sort_direction, filter_field, pattern)
        cache = self._list_cache.setdefault(instance_id, {})
        body = cache.get(key)
        if body is None:
            fragments = self._store.list_fragments(
                instance_id,
                sort_field=sort_field,
                descending=sort_direction == "desc",
                filter_field=filter_field,
                pattern=pattern,
            )
            rest: dict[str, Any] = {
                "count": len(fragments),
                "instanceId": instance_id,
                "sortField": sort_field,
                "sortDirection": sort_direction,
            }
            if filter_field:
                rest["filterField"] = filter_field
                rest["filter"] = pattern
            rest["_links"] = {"self": {"href": f"/instances/{instance_id}/members"}}
            # {"items":[<member>,...],<rest>}: each member's JSON is kept by the store, so
            # a listing of a large instance is a sort and a join, not a re-encoding.
            body = b"".join((b'{"items":[', b",".join(fragments), b"],", _body(rest)[1:]))
            if len(cache) >= _LIST_CACHE_SIZE or sum(map(len, cache.values())) > _LIST_CACHE_BYTES:
                cache.clear()
            cache[key] = body
        return 200, body


def _canonical(request: web.Request, raw: bytes, parsed: Any) -> bytes:
    """The part of a request that, with method and path, identifies it for the fault plan.

    A POST or PATCH is its JSON body with sorted keys (or the raw bytes if it is not JSON);
    a GET of the list is its list parameters, so that clients differing only in ignored
    flags meet the same faults; a GET or DELETE of one member is identified by its path
    alone.
    """
    method = request.method
    if method == "POST" or method == "PATCH":
        if parsed is _NO_BODY:
            return raw
        return json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    if "userId" in request.match_info:
        return b""
    query = request.query
    return "&".join(
        f"{name}={value}" for name in _LIST_PARAMS for value in query.getall(name, ())
    ).encode()


async def serve_forever(
    server: FakeLosantServer,
    *,
    on_ready: Callable[[str], object] | None = None,
) -> signal.Signals | None:
    """Start ``server``, call ``on_ready(url)``, and serve until stopped; then close it.

    Stops on SIGINT or SIGTERM (returning that signal, so a command line can exit with
    130 on SIGINT) or when the task is cancelled (the cancellation propagates after the
    server is closed). Signal handlers are installed only where the event loop supports
    them (the main thread, not Windows) and are removed afterwards.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    installed: list[tuple[signal.Signals, Any]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append((sig, previous))
    if installed:
        # The command line records a signal that came while it was loading: stop at once.
        from .. import _early

        early = _early.take()
        if early is not None:
            on_signal(early)
    try:
        async with server:
            if on_ready is not None:
                on_ready(server.url)
            await stop.wait()
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError, OSError):
                signal.signal(sig, previous)
    return received[0] if received else None
