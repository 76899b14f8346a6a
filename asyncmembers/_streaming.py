"""Parsing of a streamed Instance Members body: whole when small, else ijson, depth-guarded.

A body that ends within :data:`WHOLE_BODY_BYTES` is parsed in one call of the package's
JSON backend: ijson (and ``decimal``, which it loads) is imported only for a list that
is too large to hold whole, so a job against a small instance never loads it (about 3 ms
of start-up, 1 % of the CPU of a 3,000-row import).

ijson keeps a prefix string per nesting level, so a hostile body nested 100,000 deep
costs memory quadratic in the depth (17 GB was measured). :class:`DepthGuard` looks at
each chunk before ijson does and refuses nesting deeper than :data:`MAX_DEPTH`; members
are about five levels deep. The guard costs about 30 ms per 10 MB (C regex, then a loop
over the brackets only).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final, Protocol

from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "WHOLE_BODY_BYTES", "DepthGuard", "iter_members"]

#: The deepest nesting accepted in a streamed answer.
MAX_DEPTH: Final = 64
#: A body that ends within this many bytes is parsed whole; a longer one is streamed.
WHOLE_BODY_BYTES: Final = 64 * 1024

# A complete JSON string (the "unrolled loop" form: ten times faster than an alternation).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# The rest of a string that began in an earlier chunk, up to its closing quote.
_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


class Scrubber(Protocol):
    """What masks secrets in server text (:class:`asyncmembers._transport.Transport`)."""

    @property
    def secret_bytes(self) -> tuple[bytes, ...]:
        """The secrets masked, as UTF-8 (empty: nothing to mask)."""

    def scrub(self, raw: bytes) -> bytes:
        """``raw`` with every secret masked."""

    def loads(self, raw: bytes) -> Any:
        """Scrubbed ``raw`` parsed as JSON, with secrets spelled in escapes masked too."""

    def scrub_value(self, value: Any) -> Any:
        """A decoded value with every secret masked in its strings and keys."""


class DepthGuard:
    """Tracks JSON nesting across chunks; ``feed`` raises ``ValueError`` past the limit."""

    __slots__ = ("depth", "escape", "in_string", "limit")

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        self.depth = 0
        self.limit = limit
        self.in_string = False  # the previous chunk ended inside a string
        self.escape = False  # ... right after a backslash

    def feed(self, chunk: bytes) -> None:
        if self.in_string:
            start = 1 if self.escape else 0
            m = _REST.match(chunk, start)
            if m is None:
                self._string_tail(chunk[start:])
                return
            self.in_string = self.escape = False
            chunk = chunk[m.end() :]
        stripped = _STRING.sub(b"", chunk)
        # Complete strings are gone; a quote left over opens a string this chunk does not
        # close (everything after it is that string's content).
        quote = stripped.find(b'"')
        if quote >= 0:
            stripped = stripped[:quote]
            self.in_string = True
            self._string_tail(chunk)
        depth = self.depth
        for b in stripped.translate(None, _NOT_BRACKETS):
            if b == 91 or b == 123:  # [ {
                depth += 1
                if depth > self.limit:
                    raise ValueError(f"nested deeper than {self.limit} levels")
            else:
                depth -= 1
        self.depth = depth

    def _string_tail(self, chunk: bytes) -> None:
        # Inside a string, an odd run of trailing backslashes escapes the next chunk's byte.
        run = len(chunk) - len(chunk.rstrip(b"\\"))
        self.escape = run % 2 == 1


async def iter_members(
    chunks: AsyncIterator[bytes], path: str, secrets: Scrubber
) -> AsyncGenerator[dict[str, Any]]:
    """The object ``items`` of an Instance Members body, parsed as the chunks arrive.

    Raises :class:`ProtocolError` for a body that is not JSON, not an object with
    ``items``, or nested deeper than :data:`MAX_DEPTH`. ``secrets`` masks the access
    token wherever the server put it: in the members (however JSON escapes spelled it)
    and in any server text quoted in an error. A body of at most
    :data:`WHOLE_BODY_BYTES` is parsed whole; a longer one is parsed incrementally,
    never held whole.
    """
    head: list[bytes] = []
    size = 0
    async for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size > WHOLE_BODY_BYTES:
            break
    else:
        for item in _whole_members(b"".join(head), path, secrets):
            yield item
        return
    async for item in _streamed_members(head, chunks, path, secrets):
        yield item


def _whole_members(body: bytes, path: str, secrets: Scrubber) -> list[dict[str, Any]]:
    """The object items of a complete (small) body, with the streamed path's checks."""
    head = body.lstrip()
    if head and not head.startswith(b"{"):
        raise _not_members(path, secrets.scrub(head[:80]))
    try:
        DepthGuard().feed(body)
        # Masked as any answer is: in the bytes, then in what escapes spelled.
        value = secrets.loads(secrets.scrub(body))
    except (ValueError, RecursionError) as exc:
        raise _not_json(path, exc, secrets.scrub) from None
    items = value.get("items") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise _not_members(path, b"")
    return [item for item in items if isinstance(item, dict)]


async def _streamed_members(
    head: list[bytes], rest: AsyncIterator[bytes], path: str, secrets: Scrubber
) -> AsyncGenerator[dict[str, Any]]:
    """The object items of a large body: the ``head`` chunks read so far, then ``rest``."""
    import ijson  # type: ignore[import-untyped]

    async def chunks() -> AsyncGenerator[bytes]:
        first = b"".join(head)  # at most WHOLE_BODY_BYTES + one chunk, however it was cut
        head.clear()
        yield first
        async for chunk in rest:
            yield chunk

    found: list[Any] = ijson.sendable_list()
    parser = ijson.items_coro(found, "items.item", use_float=True)  # as parsed whole
    guard = DepthGuard()
    started = saw_items = False
    tail = b""
    # The chunks are not scrubbed: a token can straddle two, or be spelled in escapes.
    # Walking every decoded member for it costs ~3 us each (0.7 s for 200k members), so
    # the raw bytes are watched instead: while no chunk (with the end of the one before)
    # holds a secret or any backslash, every decoded string is a slice of those bytes and
    # cannot hold one either. From the first chunk that does, every member is walked.
    watch = secrets.secret_bytes
    overlap = max((len(s) for s in watch), default=1) - 1
    walk = False
    seen = b""
    try:
        async for chunk in chunks():
            if watch and not walk:
                window = seen + chunk
                walk = b"\\" in window or any(s in window for s in watch)
                seen = window[-overlap:] if overlap else b""
            if not started:
                first = chunk.lstrip()
                if first:
                    started = True
                    if not first.startswith(b"{"):
                        raise _not_members(path, secrets.scrub(first[:80]))
            if not saw_items:
                window = tail + chunk
                saw_items = b'"items"' in window
                tail = window[-6:]
            guard.feed(chunk)
            parser.send(chunk)
            if found:
                for item in found:
                    if isinstance(item, dict):
                        yield secrets.scrub_value(item) if walk else item
                del found[:]
        parser.close()
    except (ijson.JSONError, ValueError) as exc:
        raise _not_json(path, exc, secrets.scrub) from None
    for item in found:
        if isinstance(item, dict):
            yield secrets.scrub_value(item) if walk else item
    if not saw_items:
        raise _not_members(path, b"")


def _not_json(path: str, exc: Exception, scrub: Callable[[bytes], bytes]) -> ProtocolError:
    # yajl quotes the offending text on the lines after the first: keep the first.
    problem = scrub(str(exc).encode(errors="replace")).decode(errors="replace")
    return ProtocolError(
        f"the server's answer is not JSON ({problem.splitlines()[0][:120] if problem else 'invalid'})",
        status=200,
        method="GET",
        path=path,
    )


def _not_members(path: str, head: bytes) -> ProtocolError:
    return ProtocolError(
        "the server's answer does not look like InstanceMembers (an object with items)"
        + (f": {head!r}" if head else ""),
        status=200,
        method="GET",
        path=path,
    )
