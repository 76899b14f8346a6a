"""The session wrapper: headers, auth, timeouts, retries and error mapping.

This is the one boundary where aiohttp and asyncio failures become
:mod:`asyncmembers.errors`; nothing above it needs to import aiohttp to catch an error.
The access token lives in one header dict that is never logged, stored on an error or
shown by ``repr``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from yarl import URL

from . import _schema
from ._version import __version__
from .errors import (
    BadRequestError,
    ClientClosedError,
    ForbiddenError,
    LosantError,
    NotFoundError,
    RateLimitError,
    TransportError,
    UnauthorizedError,
    ValidationError,
    error_for_status,
)
from .retry import NOT_APPLIED_STATUSES, RetryPolicy, parse_retry_after

__all__ = ["AttemptGate", "Session"]

logger = logging.getLogger("asyncmembers")

DEFAULT_ACCEPT_VERSION = "^1.29.3"
USER_AGENT = f"asyncmembers/{__version__} (+aiohttp)"

_NO_RETRY_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ClientConnectorSSLError,
    aiohttp.ClientSSLError,
)
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,) + (
    (aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()
)


class AttemptGate(Protocol):
    """Paces individual attempts (used by the bulk importer to share rate-limit pauses).

    ``acquire`` is awaited before every attempt and raises ``TimeoutError`` if the turn
    has not come by ``deadline`` (event-loop time); ``release`` is called after the attempt
    with the method, the HTTP status (``None`` when no answer came) and the ``Retry-After``
    seconds, if any. When a gate is present a 429 is not waited out by the caller: the
    gate's next ``acquire`` does the waiting, for every worker together.
    """

    async def acquire(self, deadline: float) -> None: ...

    def release(self, method: str, status: int | None, retry_after: float | None) -> None: ...


#: Looks up whether an ambiguous POST took effect; returns the member's wire form or None.
Confirm = Callable[[float], Awaitable[Any]]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_CONTENT_TYPE_JSON: Mapping[str, str] = CIMultiDictProxy(
    CIMultiDict({"Content-Type": "application/json"})
)


class _StopAtDeadline(stop_base):
    """Stop when the next wait would end past the call's deadline (total time bound)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._loop = loop
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        upcoming = retry_state.upcoming_sleep
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            # With a gate the Retry-After is waited out by the gate, not by this wait:
            # a pause that ends past the deadline is not started either way.
            upcoming = max(upcoming, exc.retry_after)
        return self._loop.time() + upcoming >= self._deadline


class Session:
    """Sends requests to the Losant API through one pooled ``aiohttp.ClientSession``."""

    def __init__(
        self,
        *,
        auth_token: str | None,
        url: str,
        session: aiohttp.ClientSession | None,
        timeout: float | aiohttp.ClientTimeout,
        retry: RetryPolicy,
        accept_version: str,
        allow_insecure_http: bool,
        max_connections: int,
    ) -> None:
        if auth_token is not None:
            # Never echo the token: a message naming a bad character would show it.
            if not isinstance(auth_token, str):
                raise ValidationError(
                    f"auth_token must be a string, got {type(auth_token).__name__}",
                    field="auth_token",
                )
            if not _schema.is_header_safe(auth_token):
                raise ValidationError(
                    "auth_token holds a line break, a control character or invalid UTF-8; "
                    "copy the access token again",
                    field="auth_token",
                )
        base = URL(url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ValidationError(
                f"url must be an http(s) URL such as https://api.losant.com, got {url!r}",
                field="url",
            )
        if (
            base.scheme == "http"
            and auth_token
            and not allow_insecure_http
            and not is_loopback(base.host)
        ):
            raise ValidationError(
                f"refusing to send the access token over plain http to {base.host}; use https, "
                "or pass allow_insecure_http=True if this network is trusted",
                field="url",
            )
        if isinstance(timeout, aiohttp.ClientTimeout):
            self._timeout = timeout
        elif isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            self._timeout = aiohttp.ClientTimeout(total=float(timeout))
        else:
            raise ValidationError(
                f"timeout must be seconds greater than zero or an aiohttp.ClientTimeout, got {timeout!r}",
                field="timeout",
            )
        if not isinstance(retry, RetryPolicy):
            raise ValidationError(
                f"retry must be a RetryPolicy, got {type(retry).__name__}", field="retry"
            )
        self.url = str(base).rstrip("/")
        self.retry = retry
        headers: dict[str, str] = {
            "Accept": "application/json",
            "Accept-Version": accept_version,
            "User-Agent": USER_AGENT,
        }
        if auth_token:
            headers["Authorization"] = f"Bearer {auth_token}"
        # Built once as aiohttp's own header type, so no request has to convert them.
        self._headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict(headers))
        # What each request carries itself. An owned session holds the constant headers
        # as its defaults (as a hand-written aiohttp loop would), so a request only adds
        # Content-Type; a caller's session knows nothing of them, so every request
        # carries them all.
        self._get_headers: Mapping[str, str] | None = self._headers
        self._request_timeout: aiohttp.ClientTimeout | None = self._timeout
        self._post_headers: Mapping[str, str] = CIMultiDictProxy(
            CIMultiDict({**headers, "Content-Type": "application/json"})
        )
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._closed = False
        self._rand = random.Random()
        # Injectable so tests can see each wait the policy asks for without sleeping.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def has_token(self) -> bool:
        return "Authorization" in self._headers

    @property
    def closed(self) -> bool:
        return self._closed

    def _client_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError(
                "this Client is closed; create a new one, or use it inside `async with Client(...)`"
            )
        if self._session is None:
            # Created lazily, inside a running loop, as aiohttp wants.
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._timeout
            )
            self._get_headers = None
            self._post_headers = _CONTENT_TYPE_JSON
            self._request_timeout = None
        elif self._session.closed:
            raise ClientClosedError("the aiohttp.ClientSession given to Client is closed")
        return self._session

    async def close(self) -> None:
        """Close the owned session (a caller's session is left open). Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
        confirm: Confirm | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Send a request with retries and return the parsed JSON body of a 2xx answer.

        ``confirm`` makes a non-idempotent request safe to retry after an ambiguous failure:
        before resending, it is asked whether the first attempt took effect, and its answer
        is returned if so. Without it, such a request is not retried after an ambiguous
        failure.
        """
        session = self._client_session()
        loop = asyncio.get_running_loop()
        policy = self.retry
        limit = loop.time() + policy.timeout
        deadline = limit if deadline is None else min(deadline, limit)
        url = self.url + path
        data: bytes | None = None
        headers: Mapping[str, str] | None
        if body is None:
            headers = self._get_headers
        else:
            headers = self._post_headers
            data = json.dumps(body, separators=(",", ":")).encode()
        if losantdomain:
            headers = {**(headers or {}), "losantdomain": losantdomain}
        idempotent = method == "GET"
        # Set once an attempt may have been applied: from then on, look before resending.
        ambiguous = False

        async def attempt() -> Any:
            nonlocal ambiguous
            if ambiguous and confirm is not None:
                found = await confirm(deadline)
                if found is not None:
                    return found
            try:
                return await self._send(
                    session, method, url, path, params, data, headers, gate, deadline
                )
            except BadRequestError:
                # A 400 (e.g. "already a member") after an attempt that may have been
                # applied: the earlier attempt may be why. Look before reporting failure.
                if ambiguous and confirm is not None:
                    found = await confirm(deadline)
                    if found is not None:
                        return found
                raise
            except LosantError as exc:
                if not idempotent and _is_ambiguous(exc):
                    ambiguous = True
                raise

        # Fast path: the first attempt runs directly. tenacity's machinery costs tens of
        # microseconds per call, a large share of a loopback request, so it is only
        # brought in once an attempt has failed in a way worth retrying.
        try:
            return await attempt()
        except LosantError as exc:
            first_failure = exc
        try:
            return await self._retry(
                attempt,
                first_failure,
                method,
                path,
                idempotent,
                confirm is not None,
                gate,
                deadline,
            )
        except LosantError as exc:
            if not ambiguous or confirm is None or isinstance(exc, _DEFINITIVE):
                raise
            # Giving up after an attempt that may have been applied (the last one, or one
            # before it): look once more, or a member that exists is reported as failed.
            found = await _confirm_quietly(confirm, deadline)
            if found is not None:
                return found
            if not _is_ambiguous(exc):
                exc.message = f"{exc.message}; an earlier attempt may have been applied"
            raise

    async def _retry(
        self,
        attempt: Callable[[], Awaitable[Any]],
        first_failure: LosantError,
        method: str,
        path: str,
        idempotent: bool,
        confirmable: bool,
        gate: AttemptGate | None,
        deadline: float,
    ) -> Any:
        """Retry after ``first_failure`` as the policy says, or re-raise it."""
        policy = self.retry
        loop = asyncio.get_running_loop()

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, LosantError):
                return False
            if isinstance(exc, TransportError):
                if not exc.retryable:
                    return False
                return idempotent or not exc.sent or confirmable
            if exc.status is None or exc.status not in policy.retry_statuses:
                return False
            if isinstance(exc, RateLimitError) and (exc.retry_after or 0) > policy.max_retry_after:
                return False
            return idempotent or exc.status in NOT_APPLIED_STATUSES or confirmable

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, RateLimitError) and exc.retry_after is not None:
                return 0.0 if gate is not None else exc.retry_after
            return policy.backoff(rs.attempt_number, self._rand.random())

        def log_retry(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome else None
            logger.info(
                "%s %s: attempt %d of %d failed (%s: %s); retrying in %.2f s",
                method,
                path,
                rs.attempt_number,
                policy.attempts,
                type(exc).__name__,
                getattr(exc, "message", exc),
                rs.upcoming_sleep,
            )

        if policy.attempts == 1 or not should_retry(first_failure):
            raise first_failure

        replayed = False

        async def retry_attempt() -> Any:
            # tenacity sees the first failure as its attempt 1, so waits, stops and logs
            # are decided in one place for every attempt.
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return await attempt()

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts) | _StopAtDeadline(loop, deadline),
            wait=wait,
            retry=retry_if_exception(should_retry),
            before_sleep=log_retry,
            reraise=True,
            sleep=self.sleep,
        )
        try:
            return await retrying(retry_attempt)
        except LosantError as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            if tries > 1 and exc.attempts is None:
                # (An error of the confirming lookup has already said how often it tried.)
                exc.attempts = tries
                exc.message = f"{exc.message} (gave up after {tries} attempts)"
            raise

    def _check_open(self, session: aiohttp.ClientSession, method: str, path: str) -> None:
        if self._closed or session.closed:
            # Closed while this call was running (between its attempts, its lookups, or
            # while it waited at the gate): aiohttp would raise a bare RuntimeError.
            raise ClientClosedError(
                "the client was closed while this call was running; nothing more was sent",
                method=method,
                path=path,
            )

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        gate: AttemptGate | None,
        deadline: float,
    ) -> Any:
        """One attempt. Every aiohttp/asyncio failure is translated here, and only here."""
        self._check_open(session, method, path)
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TransportError(
                f"no time left for another attempt (RetryPolicy.timeout={self.retry.timeout:g}s)",
                sent=False,
                method=method,
                path=path,
            )
        if gate is not None:
            # The gate may hold the attempt (a shared 429 pause, a request rate): that
            # wait counts against the call's total time like any other.
            try:
                await gate.acquire(deadline)
            except TimeoutError:
                raise TransportError(
                    f"not sent: RetryPolicy.timeout={self.retry.timeout:g}s ran out while "
                    "waiting for its turn (a rate-limit pause, or the import's max rate)",
                    sent=False,
                    method=method,
                    path=path,
                ) from None
            remaining = max(deadline - loop.time(), 0.001)
        timeout = self._timeout
        # An owned session has the attempt timeout as its default: pass one only when the
        # call's deadline is nearer than that.
        per_request = self._request_timeout
        if timeout.total is None or timeout.total > remaining:
            timeout = per_request = attrs.evolve(timeout, total=remaining)
        status: int | None = None
        retry_after: float | None = None
        unchained: TransportError | None = None
        try:
            self._check_open(session, method, path)  # again: the gate may have waited
            try:
                if per_request is None:
                    request = session.request(
                        method, url, params=params, data=data, headers=headers
                    )
                else:
                    request = session.request(
                        method, url, params=params, data=data, headers=headers, timeout=per_request
                    )
                async with request as resp:
                    status = resp.status
                    raw = await resp.read()
                    resp_headers = resp.headers
            except _NOT_SENT_ERRORS as exc:
                raise TransportError(
                    f"could not connect: {exc}",
                    sent=False,
                    retryable=not isinstance(exc, _NO_RETRY_CONNECT_ERRORS),
                    method=method,
                    path=path,
                ) from exc
            except TimeoutError as exc:
                raise TransportError(
                    f"timed out after {timeout.total or 0:.3g} s waiting for the server "
                    "(the request may have been applied)",
                    method=method,
                    path=path,
                ) from exc
            except aiohttp.ClientResponseError as exc:
                # Its request_info holds the request's headers, the token among them: keep
                # its text only, and raise outside this block so it is not even __context__.
                unchained = TransportError(
                    f"failed after sending ({type(exc).__name__}: {exc}); "
                    "the request may have been applied",
                    method=method,
                    path=path,
                )
            except aiohttp.ClientError as exc:
                raise TransportError(
                    f"connection failed after sending ({type(exc).__name__}: {exc}); "
                    "the request may have been applied",
                    method=method,
                    path=path,
                ) from exc
            if unchained is not None:
                raise unchained
            assert status is not None  # every other way out of the request raised
            if status == 429:
                retry_after = parse_retry_after(resp_headers)
        finally:
            if gate is not None:
                gate.release(method, status, retry_after)

        parsed = _parse_json(raw)
        if 200 <= status < 300:
            if parsed is _NOT_JSON:
                raise LosantError(
                    f"{status}: the server's answer is not JSON: {raw[:200]!r}",
                    status=status,
                    method=method,
                    path=path,
                )
            return parsed
        raise error_for_status(
            status,
            None if parsed is _NOT_JSON else parsed,
            method=method,
            path=path,
            retry_after=retry_after,
        )


_NOT_JSON = object()


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return _NOT_JSON
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


#: Errors after which looking the member up cannot help (the lookup would fail the same way).
_DEFINITIVE: tuple[type[LosantError], ...] = (
    ClientClosedError,
    UnauthorizedError,
    ForbiddenError,
    NotFoundError,
)


async def _confirm_quietly(confirm: Confirm, deadline: float) -> Any:
    """The confirming lookup's answer, or None when the lookup itself fails."""
    try:
        return await confirm(deadline)
    except LosantError:
        return None


def _is_ambiguous(exc: LosantError) -> bool:
    """True when a failed non-idempotent attempt may have been applied by the server."""
    if isinstance(exc, TransportError):
        return exc.sent
    return exc.status is not None and exc.status >= 500 and exc.status not in NOT_APPLIED_STATUSES
