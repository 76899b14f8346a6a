"""The transport: one attempt over aiohttp, and the one boundary where its errors are mapped.

``Transport.send`` sends exactly one request and returns the parsed JSON of a 2xx answer
(or what a streaming ``reader`` makes of it), or raises a :mod:`asyncmembers.errors`
error; every aiohttp and asyncio failure is translated here and nowhere else, so no
caller needs ``import aiohttp`` to catch one. What the server sends is trusted for
nothing: redirects are not followed, bodies are read in chunks up to a byte cap after
decompression, JSON that does not decode is a :class:`ProtocolError`, and the access token
is scrubbed from any server text before it reaches an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import _json
from .errors import (
    ClientClosedError,
    LosantError,
    ProtocolError,
    RedirectError,
    TransportError,
    error_for_status,
)
from .retry import parse_retry_after

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "Reader", "Request", "Transport"]

#: Default cap on the bytes read from one response, after decompression: 256 MiB, room
#: for a list of about a million members (~250 bytes each) while memory stays bounded.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024

#: Reads a 2xx answer's body as a stream of byte chunks (already capped) and returns a value.
Reader = Callable[[AsyncIterator[bytes]], Awaitable[Any]]

_NO_RETRY_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorCertificateError,
    aiohttp.ClientConnectorSSLError,
    aiohttp.ClientSSLError,
)
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,) + (
    (aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()
)
_MASK = b"***"
#: The shortest secret that is masked in server text (see ``Transport.__init__``).
MIN_SCRUBBED_SECRET = 8


class Request:
    """One call's request, built once and sent by every attempt of the call."""

    __slots__ = ("data", "headers", "method", "params", "path", "reader", "url")

    def __init__(
        self,
        method: str,
        path: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        reader: Reader | None,
    ) -> None:
        self.method = method
        self.path = path
        self.url = url
        self.params = params
        self.data = data
        self.headers = headers
        self.reader = reader


class Transport:
    """Sends single attempts through one pooled ``aiohttp.ClientSession``.

    The constant headers (the token among them) live in one mapping that is never logged,
    stored on an error or shown. An owned session is created lazily in the first event
    loop that uses it; using the transport from another loop is a clear error.
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        max_response_bytes: int,
        secrets: tuple[str, ...],
        max_retry_after: float,
    ) -> None:
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._max_retry_after = max_retry_after
        # A secret too short to be told apart from ordinary text (a test token such as
        # "t") is not scrubbed: masking it would corrupt every answer. Real tokens are
        # long (Losant's are JWTs of hundreds of characters).
        self._secret_texts = tuple(s for s in secrets if len(s) >= MIN_SCRUBBED_SECRET)
        self._secrets = tuple(s.encode() for s in self._secret_texts)
        # Built once as aiohttp's own header type, so no request has to convert them.
        self._headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict(headers))
        # What each request carries itself. An owned session holds the constant headers
        # and the attempt timeout as its defaults (as a hand-written aiohttp loop would),
        # so a request only adds Content-Type; a caller's session knows nothing of them,
        # so every request carries them all.
        self.get_headers: Mapping[str, str] | None = self._headers
        self.body_headers: Mapping[str, str] = CIMultiDictProxy(
            CIMultiDict({**headers, "Content-Type": "application/json"})
        )
        # The total of an attempt is kept by the transport's timer (_AttemptTimer), never
        # by aiohttp; the rest of ``timeout`` (sock_read, connect...) is aiohttp's, given
        # with every request (a caller's session has a default of its own).
        self._aiohttp_timeout = attrs.evolve(timeout, total=None)
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_end: AsyncGenerator[None] | None = None
        #: Answers whose body is being read, so that close() can end those reads (below).
        self._reading: set[aiohttp.ClientResponse] = set()
        #: Set once close() has ended the reads of the owned session's answers.
        self._reads_ended = False
        #: Keeps every attempt's total timeout (created with the loop, see session()).
        self._timer: _AttemptTimer | None = None
        self.closed = False

    @property
    def has_token(self) -> bool:
        return "Authorization" in self._headers

    def session(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        """The aiohttp session for a call running in ``loop`` (created on first use)."""
        if self.closed:
            raise ClientClosedError(
                "this Client is closed; create a new one, or use it inside `async with Client(...)`"
            )
        if loop is not self._loop:
            if self._loop is not None:
                raise LosantError(
                    "this Client was first used in another event loop; a Client (and its "
                    "connection pool) belongs to one loop: create one Client per loop, e.g. "
                    "inside the coroutine given to asyncio.run()"
                )
            self._loop = loop
            self._timer = _AttemptTimer(loop, self.timeout.ceil_threshold)
            _raise_malloc_mmap_threshold()
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, timeout=self._aiohttp_timeout
            )
            self._watch_loop_end()
            self.get_headers = None
            self.body_headers = _CONTENT_TYPE_JSON
        elif self._session.closed:
            raise ClientClosedError("the aiohttp.ClientSession given to Client is closed")
        return self._session

    def _watch_loop_end(self) -> None:
        """Close the owned session when its loop shuts down with the client still open.

        A client never closed in its loop (``asyncio.run(use(client))`` without ``async
        with``) would leave its connections to be garbage-collected after the loop closed,
        with ResourceWarnings. ``asyncio.run`` (and uvloop's) closes every async generator
        of the loop before closing the loop (``shutdown_asyncgens``): this one's ``finally``
        closes the session while the loop still runs. It is started here, synchronously,
        up to its ``yield`` (the loop's first-iteration hook registers it).
        """
        self._loop_end = self._on_loop_end()
        step = self._loop_end.asend(None)
        with contextlib.suppress(StopIteration):  # it stopped at its yield
            step.send(None)

    async def _on_loop_end(self) -> AsyncGenerator[None]:
        try:
            yield
        finally:
            session = self._session
            if session is not None and self._owns_session and not session.closed:
                await session.close()

    async def close(self) -> None:
        """Close the owned session (a caller's session is left open). Idempotent.

        A call of this client still running ends with :class:`ClientClosedError`, also
        one whose answer is arriving: aiohttp closes the connections, and wakes a call
        still waiting for an answer's head, but not one reading its body (that read
        would wait out the attempt timeout, 30 s by default, and then blame the server).
        """
        self.closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            if self._loop is not None and asyncio.get_running_loop() is not self._loop:
                return  # its loop is gone or elsewhere; it cannot be closed from here
            self._reads_ended = True
            for resp in list(self._reading):
                resp.close()  # its body's reader raises ClientConnectionError at once
            await session.close()

    def scrub(self, raw: bytes) -> bytes:
        """``raw`` with every occurrence of a secret (the access token) masked."""
        for secret in self._secrets:
            # No ``secret in raw`` first: replace() hands back raw itself when the secret
            # is absent, in less time than that test takes (see loads()).
            raw = raw.replace(secret, _MASK)
        return raw

    def scrub_quoted(self, raw: bytes) -> bytes:
        """``raw`` to be quoted in a message: :meth:`scrub`-bed, and where JSON escapes spell
        a secret (``\\u0074ok...``: one escape away from plain, however many levels deep),
        the unescaped text with the secret masked instead."""
        raw = self.scrub(raw)
        if self._secrets and b"\\" in raw:
            plain = raw
            for _ in range(3):  # an escaped escape, and one more
                plain = _JSON_ESCAPE.sub(_unescape, plain)
            if any(secret in plain for secret in self._secrets):
                return self.scrub(plain)
        return raw

    @property
    def secret_bytes(self) -> tuple[bytes, ...]:
        """The secrets :meth:`scrub` masks, as UTF-8 (empty when there are none)."""
        return self._secrets

    def scrub_value(self, value: Any) -> Any:
        """``value`` decoded from server JSON, with every secret masked in its strings and
        keys (for values parsed from bytes that were not :meth:`scrub`-bed whole, such as
        the items of a streamed list). Mutates containers in place."""
        if self._secret_texts:
            value = _scrub_decoded(value, self._secret_texts)
        return value

    def loads(self, raw: bytes) -> Any:
        """``raw`` (already :meth:`scrub`-bed) parsed as JSON, with secrets masked once decoded.

        JSON can spell any character as an escape (``\\u0074`` is ``t``), so a server can
        echo the token in a form the byte scrub does not see, which decoding then restores.
        Without a backslash in ``raw`` the decoded strings are byte-for-byte slices of it,
        already scrubbed; with one, every decoded string (and key) is scrubbed again.
        """
        value = _json.loads(raw)
        # find(), not ``in``: on bytes, ``in`` first tries its operand as an integer (a
        # byte value) and builds the TypeError it then drops, about twice find()'s cost.
        if self._secret_texts and raw.find(b"\\") != -1:
            value = _scrub_decoded(value, self._secret_texts)
        return value

    async def send(
        self, session: aiohttp.ClientSession, req: Request, total: float, now: float
    ) -> Any:
        """Send one attempt of at most ``total`` seconds from ``now`` (loop time); return
        the parsed 2xx answer, or raise the mapped error."""
        timer = self._timer
        assert timer is not None  # session() made it
        attempt = timer.enter(total, now)
        try:
            method, path = req.method, req.path
            unchained: LosantError | None = None
            try:
                # Redirects are never followed: aiohttp would resend a POST as a GET, and send
                # the request (its body too) to whatever origin the server names.
                request = session.request(
                    method,
                    req.url,
                    params=req.params,
                    data=req.data,
                    headers=req.headers,
                    timeout=self._aiohttp_timeout,
                    allow_redirects=False,
                )
                async with request as resp:
                    # Known to close() while its body is read (see there). An answer whose head
                    # came as close() ran, before this task resumed, is ended here.
                    reading = self._reading
                    reading.add(resp)
                    try:
                        if self._reads_ended:
                            raise self._closed_under(method, path, in_flight=True)
                        status = resp.status
                        if 200 <= status < 300:
                            if req.reader is not None:
                                chunks = self._chunks(resp, method, path)
                                try:
                                    return await req.reader(chunks)
                                finally:
                                    await chunks.aclose()
                            # Server text is scrubbed where it enters: whatever of it later
                            # reaches an error, a log line or a report cannot hold the token.
                            raw = self.scrub(await self._read(resp, method, path))
                            try:
                                return self.loads(raw)
                            except (ValueError, RecursionError) as exc:
                                raise ProtocolError(
                                    f"{status}: the server's answer is not JSON ({_problem(exc)}): "
                                    f"{self.scrub_quoted(raw)[:200]!r}",
                                    status=status,
                                    method=method,
                                    path=path,
                                ) from None
                        if 300 <= status < 400:
                            location = resp.headers.get("Location")
                            if location is not None:
                                location = self.scrub(location.encode(errors="replace")).decode()
                            raise _redirect_error(
                                status, location, method, path, self._secret_texts
                            )
                        raw = self.scrub(await self._read(resp, method, path))
                        retry_after = parse_retry_after(resp.headers) if status == 429 else None
                    finally:
                        reading.discard(resp)
            except LosantError:
                raise
            except _NOT_SENT_ERRORS as exc:
                if self.closed:
                    raise self._closed_under(method, path, in_flight=False) from None
                raise TransportError(
                    f"could not connect: {exc}",
                    sent=False,
                    retryable=not isinstance(exc, _NO_RETRY_CONNECT_ERRORS),
                    method=method,
                    path=path,
                ) from exc
            except TimeoutError as exc:
                # aiohttp's own: sock_read or sock_connect (the total is the timer's).
                raise self._timed_out(f"waiting for the server ({exc})", method, path) from exc
            except aiohttp.ClientResponseError as exc:
                # Its request_info holds the request's headers, the token among them: keep its
                # text only, and raise outside this block so it is not even __context__.
                unchained = self._failed_after_sending(method, path, exc)
            except (aiohttp.ClientError, RuntimeError) as exc:
                # RuntimeError: aiohttp's "Session is closed" when close() ran under the call.
                if self.closed:
                    raise self._closed_under(method, path, in_flight=True) from None
                if isinstance(exc, RuntimeError):
                    raise
                raise self._failed_after_sending(method, path, exc) from exc
            if unchained is not None:
                raise unchained
            raise self._error(status, raw, method, path, retry_after)
        except asyncio.CancelledError:
            cause = timer.leave(attempt)
            if cause is _Cancel.TIMEOUT:
                how = f"after {total:.3g} s waiting for the server"
                raise self._timed_out(how, req.method, req.path) from None
            if cause is _Cancel.NOT_THE_TASK and self.closed:
                # Not a cancellation of the call: close() ended aiohttp's wait for a
                # connection from the pool (its connector cancels those waiters).
                raise self._closed_under(req.method, req.path, in_flight=False) from None
            raise
        finally:
            timer.done(attempt)

    def _timed_out(self, how: str, method: str, path: str) -> TransportError:
        return TransportError(
            f"timed out {how}"
            + (" (the request may have been applied)" if method != "GET" else ""),
            method=method,
            path=path,
        )

    def _error(
        self, status: int, raw: bytes, method: str, path: str, retry_after: float | None
    ) -> LosantError:
        parsed: Any = None
        if raw:
            try:
                parsed = self.loads(raw)
            except (ValueError, RecursionError):
                parsed = None  # an error page in HTML: the status says enough
        return error_for_status(
            status,
            parsed,
            method=method,
            path=path,
            retry_after=retry_after,
            max_retry_after=self._max_retry_after,
        )

    def _failed_after_sending(self, method: str, path: str, exc: BaseException) -> LosantError:
        if self.closed:
            return self._closed_under(method, path, in_flight=True)
        applied = "" if method == "GET" else "; the request may have been applied"
        return TransportError(
            f"connection failed after sending ({type(exc).__name__}: "
            f"{self.scrub(str(exc).encode()).decode()}){applied}",
            method=method,
            path=path,
        )

    def _closed_under(self, method: str, path: str, *, in_flight: bool) -> ClientClosedError:
        applied = (
            f"; this {method} was in flight and may have been applied"
            if in_flight and method != "GET"
            else ""
        )
        return ClientClosedError(
            f"the client was closed while this call was running{applied}",
            in_flight=in_flight,
            method=method,
            path=path,
        )

    def _too_large(self, method: str, path: str, status: int) -> ProtocolError:
        return ProtocolError(
            f"{status}: the server's answer exceeds max_response_bytes="
            f"{self.max_response_bytes} bytes; stopped reading (raise "
            "Client(max_response_bytes=...) if such an answer is expected)",
            status=status,
            method=method,
            path=path,
        )

    async def _read(self, resp: aiohttp.ClientResponse, method: str, path: str) -> bytes:
        """The whole body, read in chunks as they arrive (decompressed), up to the cap."""
        cap = self.max_response_bytes
        length = resp.content_length
        if length is not None and length > cap and "Content-Encoding" not in resp.headers:
            raise self._too_large(method, path, resp.status)
        content = resp.content
        first = await content.readany()
        if content.at_eof():  # the whole body came at once: the usual small answer
            if len(first) > cap:
                raise self._too_large(method, path, resp.status)
            return first
        chunks = [first]
        size = len(first)
        while chunk := await content.readany():
            size += len(chunk)
            if size > cap:
                raise self._too_large(method, path, resp.status)
            chunks.append(chunk)
        if size > cap:
            raise self._too_large(method, path, resp.status)
        return first if len(chunks) == 1 else b"".join(chunks)

    async def _chunks(
        self, resp: aiohttp.ClientResponse, method: str, path: str
    ) -> AsyncGenerator[bytes]:
        """The body as decompressed chunks as they arrive, up to the cap (for streaming)."""
        cap = self.max_response_bytes
        size = 0
        content = resp.content
        # At most 64 KiB a step: readany() hands over whatever aiohttp has buffered (768 KB
        # was seen), and parsing that much in one step held the event loop ~50 ms.
        while chunk := await content.read(_STREAM_CHUNK):
            size += len(chunk)
            if size > cap:
                raise self._too_large(method, path, resp.status)
            yield chunk


_current_task = asyncio.current_task


class _Cancel(enum.Enum):
    """Why an attempt's task met a CancelledError (see _AttemptTimer.leave)."""

    TIMEOUT = "the attempt's timer cancelled the task"
    TASK = "the task was cancelled by someone else"
    NOT_THE_TASK = "the task was not cancelled: an awaited future was"


class _AttemptTimer:
    """The total timeout of every attempt in flight, by one timer for them all.

    aiohttp would arm a timer per request (a ``TimerHandle`` on the loop's heap, cancelled
    when the answer has been read: on asyncio about 4% of a row's instructions in an
    import), and its timeout context, entered twice per request, undoes a cancellation
    twice: a caller's ``task.cancel()`` in the same loop iteration as the timeout was
    swallowed (the call ended with a timeout error, the task was never cancelled, and a
    bulk import cancelled so hung on a worker that went on waiting for rows); nor could
    it end an attempt while a ``scan_raw`` consumer ran outside aiohttp's code.

    Each attempt is due at its start plus its total, rounded up to a whole second of loop
    time from ``ceil_threshold`` (5 s) up, as aiohttp rounds. The timer fires at the
    earliest due time in flight and cancels the tasks of the attempts due by then; each
    such attempt undoes that one cancellation and ends as a timeout (:meth:`leave`); a
    cancellation from elsewhere propagates. Attempts are numbered, not keyed by task: a
    ``scan_raw`` consumer may make calls while its GET's attempt is in flight.
    """

    __slots__ = (
        "_armed_for",
        "_ceil_threshold",
        "_due",
        "_expired",
        "_handle",
        "_last",
        "_loop",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, ceil_threshold: float) -> None:
        self._loop = loop
        self._ceil_threshold = ceil_threshold
        #: Attempts in flight: number -> (task, due time, the task's cancelling() at start).
        self._due: dict[int, tuple[asyncio.Task[Any], float, int]] = {}
        #: Attempts this timer ended (their task cancelled) that have not left yet.
        self._expired: set[int] = set()
        self._last = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def enter(self, total: float, now: float) -> int:
        """Start timing an attempt of the current task that starts ``now`` (loop time);
        returns its number for leave() and done()."""
        task = _current_task(self._loop)
        if task is None:
            raise RuntimeError("an asyncmembers call must run in an asyncio task")
        due = now + total
        if total >= self._ceil_threshold:
            due = math.ceil(due)
        self._last = attempt = self._last + 1
        self._due[attempt] = (task, due, task.cancelling())
        if due < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(due)
        return attempt

    def done(self, attempt: int) -> None:
        """End ``attempt`` (idempotent)."""
        entry = self._due.pop(attempt, None)
        if entry is not None and self._expired and attempt in self._expired:
            # Cancelled by this timer, ended some other way: the cancel is undone all the same.
            self._expired.discard(attempt)
            entry[0].uncancel()

    def leave(self, attempt: int) -> _Cancel | None:
        """End ``attempt`` as its task meets a CancelledError: why it did (None if the
        attempt had already ended)."""
        entry = self._due.pop(attempt, None)
        if entry is None:
            return None
        task, _, cancelling = entry
        if attempt in self._expired:
            self._expired.discard(attempt)
            # Undo this timer's cancel; one from elsewhere (counted above the start) stays.
            return _Cancel.TIMEOUT if task.uncancel() <= cancelling else _Cancel.TASK
        # Any cancellation requested of the task (a pending one included) is the caller's.
        return _Cancel.TASK if task.cancelling() else _Cancel.NOT_THE_TASK

    def _arm(self, when: float) -> None:
        self._armed_for = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        # A loop may run a timer a hair before its time (uvloop's are in milliseconds).
        now = max(self._loop.time(), self._armed_for)
        self._armed_for = math.inf
        nearest = math.inf
        expired = self._expired
        for attempt, (task, due, _) in self._due.items():
            if attempt in expired:
                continue
            if due <= now:
                expired.add(attempt)
                task.cancel()
            elif due < nearest:
                nearest = due
        if nearest < math.inf:
            self._arm(nearest)


#: The block freed once per process by :func:`_raise_malloc_mmap_threshold`.
_THRESHOLD_BLOCK = 1024 * 1024
_threshold_raised = False


def _raise_malloc_mmap_threshold() -> None:
    """Free one large, never-touched block, once per process, before the first request.

    asyncio's selector transports receive into a fresh 256 KiB ``bytes`` for every read
    (``max_size``) and shrink it to what arrived. With glibc's initial settings a block
    that large is its own mmap: every answer then cost an mmap, a page fault, an mremap
    and a munmap (strace: 3 extra system calls per row of an import). glibc raises that
    threshold by itself once a larger mmapped block is freed; a process that happens to
    free one early (a gather of thousands of tasks grows a set past it) never pays, one
    that does not pays on every answer. Freeing one 1 MiB block here triggers glibc's own
    adjustment at once. ``bytes(n)`` is allocated by calloc, whose fresh mmapped pages
    are never written: the cost is one mmap and one munmap. Elsewhere (uvloop, musl,
    macOS) it is a harmless allocation.
    """
    global _threshold_raised
    if not _threshold_raised:
        _threshold_raised = True
        del_at_once = bytes(_THRESHOLD_BLOCK)
        del del_at_once


#: Bytes handed to the streaming parser per event-loop step.
_STREAM_CHUNK = 65536

_CONTENT_TYPE_JSON: Mapping[str, str] = CIMultiDictProxy(
    CIMultiDict({"Content-Type": "application/json"})
)


def _problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _redirect_error(
    status: int, location: str | None, method: str, path: str, secrets: tuple[str, ...]
) -> RedirectError:
    if location:
        # Case-insensitively: a host name is read in lower case, so a token spelled in
        # capitals there would come out as the token itself.
        for secret in secrets:
            location = re.sub(re.escape(secret), "***", location, flags=re.IGNORECASE)
    try:
        host = URL(location).host if location else None
    except ValueError:
        host = None
    where = f" to {host}" if host else (" to another path" if location else "")
    return RedirectError(
        f"{status}: the server redirected the request{where}; redirects are not followed "
        "(check the API URL: it must be the API's own address)",
        status=status,
        method=method,
        path=path,
        location=location,
    )


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


_JSON_ESCAPE = re.compile(rb'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_SIMPLE_ESCAPES = {
    b'"': b'"',
    b"\\": b"\\",
    b"/": b"/",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
}


def _unescape(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return chr(int(m.group(1), 16)).encode("utf-8", "surrogatepass")
    return _SIMPLE_ESCAPES[m.group(2)]


def _scrub_decoded(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (fresh from a JSON parser) with ``secrets`` masked in every string and key.

    Walked with an explicit stack, not recursion: a parser accepts nesting (about 1000
    levels) as deep as Python's own recursion limit.
    """
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    item = _scrub_text(item, secrets)
                elif isinstance(item, dict | list):
                    stack.append(item)
                if isinstance(key, str) and (clean := _scrub_text(key, secrets)) != key:
                    del node[key]
                    key = clean
                node[key] = item
        elif isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _scrub_text(item, secrets)
                elif isinstance(item, dict | list):
                    stack.append(item)
    return value
