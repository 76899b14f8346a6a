"""The session: validated settings, pacing, and the one retry loop over the transport.

Layers, each doing one thing you can name (the httpx shape):

- :class:`~asyncmembers._transport.Transport` sends ONE attempt and maps every aiohttp
  and asyncio failure to :mod:`asyncmembers.errors` at one boundary;
- :meth:`Session.send` is one attempt as the caller's pacing sees it: the ``gate``, the
  remaining time budget, the attempt timeout;
- :meth:`Session.retrying` sends the first attempt; :meth:`Session.retry_after` is the one
  retry loop after a first failure, driven by :class:`RetryPolicy` with
  tenacity, the way stamina uses it: ``stop_any(stop_after_attempt, stop_before_delay)``
  and a wait that honours ``Retry-After``. Which failures are worth another attempt, and
  which may have been applied, is read from the errors themselves (``errors.py``).

The POST rule (confirm before resending after an answer that may have been applied) is not
here: it lives beside the resource that understands members (``resources._SafePost``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from yarl import URL

from . import _json, _schema
from ._transport import DEFAULT_MAX_RESPONSE_BYTES, Reader, Request, Transport
from ._version import __version__
from .errors import (
    IDEMPOTENT_METHODS,
    LosantError,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from .retry import RetryPolicy

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "Attempt", "AttemptGate", "Session"]

logger = logging.getLogger("asyncmembers")

DEFAULT_ACCEPT_VERSION = "^1.29.3"
USER_AGENT = f"asyncmembers/{__version__} (+aiohttp)"

#: An attempt is not sent with less time than this left in the call's budget: it could
#: only time out, and for a POST that would make a needless "may have been applied".
MIN_ATTEMPT_SECONDS = 0.05


class AttemptGate(Protocol):
    """Paces individual attempts (used by the bulk engine to share rate-limit pauses).

    ``try_acquire`` is called before every attempt and takes the turn at once when
    nothing needs waiting for (True); when it returns False, ``acquire`` is awaited, and
    raises ``TimeoutError`` if the turn has not come by ``deadline`` (event-loop time).
    (Most attempts wait for nothing: the split keeps a coroutine off their path.)
    ``release`` is called after the attempt
    with the method, the HTTP status (``None`` when no answer came) and the ``Retry-After``
    seconds, if any. When a gate is present a 429 is not waited out by the caller: the
    gate's next ``acquire`` does the waiting, for every worker together.
    """

    def try_acquire(self) -> bool: ...

    async def acquire(self, deadline: float) -> None: ...

    def release(self, method: str, status: int | None, retry_after: float | None) -> None: ...


class Attempt(Protocol):
    """One attempt of a call that needs more than a plain send (the POST safety rule)."""

    async def attempt(self, deadline: float) -> Any: ...


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# A DNS name (labels of letters, digits, hyphens; IDNA already applied by yarl) or an IP.
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?"
)


def check_url(url: object, *, auth_token: str | None, allow_insecure_http: bool) -> URL:
    """The API base URL, validated: http(s), a real host and port, no userinfo, query or
    fragment, and no token over plain http to anything but loopback (unless allowed)."""
    if not isinstance(url, str):
        raise ValidationError(f"url must be a string, got {type(url).__name__}", field="url")
    try:
        base = URL(url)
        port = base.port
        host = base.host
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"url is not a valid URL ({exc}); expected e.g. https://api.losant.com",
            field="url",
        ) from None
    if base.user is not None or base.password is not None:
        # Never echo the URL: its userinfo may be a password.
        raise ValidationError(
            "url must not hold a user name or password (user:pass@); pass the access token "
            "as auth_token (or --token / LOSANT_API_TOKEN)",
            field="url",
        )
    shown = str(base)
    if base.scheme not in ("http", "https") or not host:
        raise ValidationError(
            f"url must be an http(s) URL such as https://api.losant.com, got {shown!r}",
            field="url",
        )
    if base.query_string or "?" in url:
        raise ValidationError(
            f"url must not hold a query (?...): every call adds its own; got {shown!r}",
            field="url",
        )
    if base.fragment or "#" in url:
        raise ValidationError(f"url must not hold a fragment (#...); got {shown!r}", field="url")
    if port is None or not 0 < port < 65536:
        raise ValidationError(f"url has an invalid port; got {shown!r}", field="url")
    if _HOSTNAME.fullmatch(host) is None:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValidationError(f"url has an invalid host {host!r}", field="url") from None
    if base.scheme == "http" and auth_token and not allow_insecure_http and not is_loopback(host):
        raise ValidationError(
            f"refusing to send the access token over plain http to {host}; use https, "
            "or pass allow_insecure_http=True if this network is trusted",
            field="url",
        )
    return base


class Session:
    """Sends requests to the Losant API: pacing, time budget, retries, over one transport."""

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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
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
        base = check_url(url, auth_token=auth_token, allow_insecure_http=allow_insecure_http)
        if isinstance(timeout, aiohttp.ClientTimeout):
            attempt_timeout = timeout
        elif isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            attempt_timeout = aiohttp.ClientTimeout(total=float(timeout))
        else:
            raise ValidationError(
                f"timeout must be seconds greater than zero or an aiohttp.ClientTimeout, "
                f"got {timeout!r}",
                field="timeout",
            )
        if not isinstance(retry, RetryPolicy):
            raise ValidationError(
                f"retry must be a RetryPolicy, got {type(retry).__name__}", field="retry"
            )
        if (
            not isinstance(max_response_bytes, int)
            or isinstance(max_response_bytes, bool)
            or max_response_bytes < 1
        ):
            raise ValidationError(
                "max_response_bytes must be a whole number of bytes greater than zero, "
                f"got {max_response_bytes!r}",
                field="max_response_bytes",
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
        self.transport = Transport(
            headers=headers,
            timeout=attempt_timeout,
            session=session,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            secrets=(auth_token,) if auth_token else (),
            max_retry_after=retry.max_retry_after,
        )
        # Less than this left in the budget and an attempt is not sent (see the constant).
        self._floor = min(MIN_ATTEMPT_SECONDS, retry.timeout / 10)
        if attempt_timeout.total:
            self._floor = min(self._floor, attempt_timeout.total / 10)
        self._rand = random.Random()
        # Injectable so tests can see each wait the policy asks for without sleeping.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def has_token(self) -> bool:
        return self.transport.has_token

    @property
    def closed(self) -> bool:
        return self.transport.closed

    @property
    def max_response_bytes(self) -> int:
        return self.transport.max_response_bytes

    async def close(self) -> None:
        """Close the owned session (a caller's session is left open). Idempotent."""
        await self.transport.close()

    # -- building a call ------------------------------------------------------------------

    def build(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        losantdomain: str | None = None,
        reader: Reader | None = None,
    ) -> Request:
        """The request every attempt of one call sends (encoded once)."""
        transport = self.transport
        if body is None:
            data = None
            headers = transport.get_headers
        else:
            data = _json.dumps(body)
            headers = transport.body_headers
        if losantdomain:
            headers = {**(headers or {}), "losantdomain": losantdomain}
        return Request(method, path, self.url + path, params, data, headers, reader)

    def deadline(self, deadline: float | None = None) -> float:
        """The call's deadline (event-loop time): now + ``RetryPolicy.timeout``, or sooner."""
        limit = asyncio.get_running_loop().time() + self.retry.timeout
        return limit if deadline is None else min(deadline, limit)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        losantdomain: str | None = None,
        gate: AttemptGate | None = None,
        deadline: float | None = None,
        reader: Reader | None = None,
        absent_ok: bool = False,
    ) -> Any:
        """Send a request with retries; return the parsed JSON of its 2xx answer.

        ``reader`` replaces the JSON parsing of a 2xx body: it receives the body as byte
        chunks (capped at ``max_response_bytes``) and its return value is returned; a retried
        attempt calls it again. ``absent_ok`` (DELETE) makes a 404 that answers a retry
        after an attempt that may have been applied a success (``None``). A POST sent this
        way is resent only after failures that prove it was not applied.
        """
        req = self.build(
            method, path, params=params, body=body, losantdomain=losantdomain, reader=reader
        )
        return await self.retrying(req, gate, self.deadline(deadline), absent_ok=absent_ok)

    # -- one attempt ----------------------------------------------------------------------

    async def send(self, req: Request, gate: AttemptGate | None, deadline: float) -> Any:
        """One attempt: wait for the gate, check the budget, send, tell the gate."""
        loop = asyncio.get_running_loop()
        transport = self.transport
        session = transport.session(loop)
        waited = gate is not None and not gate.try_acquire()
        if waited:
            assert gate is not None
            # The gate holds the attempt (a shared 429 pause, a request rate): that
            # wait counts against the call's total time like any other.
            try:
                await gate.acquire(deadline)
            except TimeoutError:
                raise TransportError(
                    f"not sent: RetryPolicy.timeout={self.retry.timeout:g}s ran out while "
                    "waiting for its turn (a rate-limit pause, or the import's max rate)",
                    sent=False,
                    retryable=False,
                    method=req.method,
                    path=req.path,
                ) from None
        status: int | None = None
        retry_after: float | None = None
        started = loop.time()
        try:
            remaining = deadline - started
            if remaining < self._floor:
                raise TransportError(
                    f"not sent: {max(remaining, 0) * 1000:.0f} ms left of "
                    f"RetryPolicy.timeout={self.retry.timeout:g}s, too little for an attempt",
                    sent=False,
                    retryable=False,
                    method=req.method,
                    path=req.path,
                )
            if waited:
                session = transport.session(loop)  # again: close() may have run at the gate
            total = transport.timeout.total
            if total is None or total > remaining:
                total = remaining
            result = await transport.send(session, req, total, started)
            status = 200
            if logger.isEnabledFor(logging.DEBUG):
                _log_attempt(req, status, loop.time() - started)
            return result
        except LosantError as exc:
            status = exc.status
            if isinstance(exc, RateLimitError):
                retry_after = exc.retry_after
            if logger.isEnabledFor(logging.DEBUG):
                _log_attempt(req, status or type(exc).__name__, loop.time() - started)
            raise
        finally:
            if gate is not None:
                gate.release(req.method, status, retry_after)

    # -- the retry loop -------------------------------------------------------------------

    def should_retry(self, exc: BaseException, method: str, confirmable: bool) -> bool:
        """Whether another attempt is worth making after ``exc``.

        Read from the error (``retryable``, ``may_have_been_applied``) and the policy's
        ``retry_statuses``; a POST is resent after an answer that may have been applied
        only when the caller confirms first (``confirmable``).
        """
        if not isinstance(exc, LosantError) or not exc.retryable:
            return False
        if exc.status is not None and exc.status not in self.retry.retry_statuses:
            return False
        return method in IDEMPOTENT_METHODS or confirmable or not exc.may_have_been_applied

    def wait_for(self, exc: BaseException | None, failed_attempt: int, gated: bool) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1 = the first) failed with ``exc``."""
        if isinstance(exc, RateLimitError) and exc.retry_after:
            # With a gate, its next acquire() waits out the pause, for every worker together.
            return 0.0 if gated else exc.retry_after
        # No Retry-After, or one of 0 (or a date already past): the backoff, as for any
        # other failure. Taken at its word, "retry now" spent all five attempts of a call
        # within ~2 ms, while a bucket emptied for a few milliseconds.
        return self.retry.backoff(failed_attempt, self._rand.random())

    async def retrying(
        self,
        req: Request,
        gate: AttemptGate | None,
        deadline: float,
        *,
        absent_ok: bool = False,
    ) -> Any:
        """Run a call's attempts as :class:`RetryPolicy` says; return the first success.

        The first attempt is sent directly: tenacity's machinery costs tens of microseconds
        a call, a large share of a loopback request, so it is entered only after a first
        failure worth retrying (:meth:`retry_after`, in plain sight).
        """
        try:
            return await self.send(req, gate, deadline)
        except LosantError as exc:
            first = exc
        return await self.retry_after(first, req, gate, deadline, absent_ok=absent_ok)

    async def retry_after(
        self,
        first: LosantError,
        req: Request,
        gate: AttemptGate | None,
        deadline: float,
        *,
        safe: Attempt | None = None,
        absent_ok: bool = False,
    ) -> Any:
        """The rest of a call whose first attempt failed with ``first``: raise it if it is
        not worth another attempt, else retry as :class:`RetryPolicy` says.

        ``safe`` replaces the plain attempt (the POST rule: it confirms before resending).
        """
        if self.retry.attempts == 1 or not self.should_retry(first, req.method, safe is not None):
            raise first
        return await self._retry(req, gate, deadline, safe, first, absent_ok)

    async def _retry(
        self,
        req: Request,
        gate: AttemptGate | None,
        deadline: float,
        safe: Attempt | None,
        first: LosantError,
        absent_ok: bool,
    ) -> Any:
        """Attempts 2..N after ``first`` failed: tenacity drives waits, stops and logs."""
        # Imported here, after a first failure worth retrying: most runs never need it,
        # and importing the package should not pay for it.
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            stop_any,
            stop_before_delay,
        )

        policy = self.retry
        loop = asyncio.get_running_loop()
        method, path = req.method, req.path
        confirmable = safe is not None
        applied = first.may_have_been_applied
        wait = self.wait_for(first, 1, gate is not None)
        if not self._worth_waiting(first, wait, deadline, loop):
            raise first
        self._log_retry(method, path, 1, first, wait)
        await self.sleep(wait)

        def retry(exc: BaseException) -> bool:
            return self.should_retry(exc, method, confirmable) and self._worth_waiting(
                exc, 0.0, deadline, loop
            )

        def wait_next(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            return self.wait_for(exc, rs.attempt_number + 1, gate is not None)

        def before_sleep(rs: RetryCallState) -> None:
            nonlocal applied
            exc = rs.outcome.exception() if rs.outcome else None
            applied = applied or (isinstance(exc, LosantError) and exc.may_have_been_applied)
            self._log_retry(method, path, rs.attempt_number + 1, exc, rs.upcoming_sleep)

        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(policy.attempts - 1),
                stop_before_delay(max(deadline - loop.time(), 0.0)),
            ),
            wait=wait_next,
            retry=retry_if_exception(retry),
            before_sleep=before_sleep,
            reraise=True,
            sleep=self.sleep,
        )
        attempt = safe.attempt if safe is not None else None
        try:
            async for state in retrying:
                with state:
                    if attempt is not None:
                        return await attempt(deadline)
                    return await self.send(req, gate, deadline)
        except NotFoundError:
            # DELETE: an earlier attempt that may have been applied removed the member.
            if absent_ok and applied:
                return None
            raise
        except LosantError as exc:
            tries = 1 + retrying.statistics.get("attempt_number", 1)
            if exc.attempts is not None:
                raise  # the confirming lookup's own error has said how often it tried
            raise exc.evolve(
                message=f"{exc.message} (gave up after {tries} attempts)",
                attempts=tries,
                earlier_attempt_applied=applied and not exc.may_have_been_applied,
            ) from exc.__cause__
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _worth_waiting(
        self, exc: BaseException, wait: float, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> bool:
        # A Retry-After that ends past the deadline is not started, even when a gate (not
        # this loop) would do the waiting: the call could only fail at the end of it.
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return loop.time() + wait < deadline

    def _log_retry(
        self, method: str, path: str, failed: int, exc: BaseException | None, wait: float
    ) -> None:
        logger.info(
            "%s %s: attempt %d of %d failed (%s: %s); retrying in %.2f s",
            method,
            path,
            failed,
            self.retry.attempts,
            type(exc).__name__,
            getattr(exc, "message", exc),
            wait,
        )


def _log_attempt(req: Request, outcome: int | str, seconds: float) -> None:
    """One DEBUG line per attempt: method, path and query, status (or error), time."""
    target = str(URL(req.path).with_query(req.params)) if req.params else req.path
    logger.debug("%s %s %s %d ms", req.method, target, outcome, round(seconds * 1000))
