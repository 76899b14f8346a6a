"""Parsing of a streamed Instance Members body: whole when small, else ijson, depth-guarded.

A body that ends within :data:`WHOLE_BODY_BYTES` is parsed in one call of the package's
JSON backend: ijson (and ``decimal``, which it loads) is imported only for a list that
is too large to hold whole, so a job against a small instance never loads it (about 3 ms
of start-up, 1 % of the CPU of a 3,000-row import).

ijson keeps a prefix string per nesting level (the path of keys down to it), so a hostile
body nested 100,000 deep costs memory quadratic in the depth (17 GB was measured), and 62
levels under 130 KB keys took 455 MB for an 8 MB body. :class:`DepthGuard` looks at each
chunk before ijson does and refuses nesting deeper than :data:`MAX_DEPTH` (members are
about five levels deep) and strings running on past :data:`MAX_STRING_BYTES`. The guard
costs about 0.1 s per 10 MB (C regex, then a loop over the brackets only), linear
whatever the body.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final, Protocol

from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "MAX_STRING_BYTES", "WHOLE_BODY_BYTES", "DepthGuard", "iter_members"]

#: The deepest nesting accepted in a member list (members are about five levels deep).
MAX_DEPTH: Final = 16
#: The longest string (key or value) accepted in a member list, in bytes.
MAX_STRING_BYTES: Final = 256 * 1024
#: A body that ends within this many bytes is parsed whole; a longer one is streamed.
WHOLE_BODY_BYTES: Final = 64 * 1024

# A complete JSON string (the "unrolled loop" form: ten times faster than an alternation).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# Appended to a chunk before its strings are removed: it closes a string the chunk leaves
# open (the space ends a trailing escape), so the engine never retries at every later
# quote of an unclosed one (quadratic in a run of escaped quotes: 3.5 s for 32 KB).
_SENTINEL: Final = b' "'
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

    def scrub_quoted(self, raw: bytes) -> bytes:
        """``raw`` to be quoted in a message: masked also where JSON escapes spell a secret."""

    def loads(self, raw: bytes) -> Any:
        """Scrubbed ``raw`` parsed as JSON, with secrets spelled in escapes masked too."""

    def scrub_value(self, value: Any) -> Any:
        """A decoded value with every secret masked in its strings and keys."""


class DepthGuard:
    """Tracks JSON nesting across chunks; ``feed`` raises ``ValueError`` past the limits.

    ijson keeps the path of keys down to every level, so nesting and key length together
    bound its memory: :data:`MAX_DEPTH` levels, and no string running on for more than
    :data:`MAX_STRING_BYTES` past the chunk it began in (62 levels under 130 KB keys took
    455 MB for an 8 MB body).
    """

    __slots__ = ("depth", "escape", "in_string", "limit", "string_bytes")

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        self.depth = 0
        self.limit = limit
        self.in_string = False  # the previous chunk ended inside a string
        self.escape = False  # ... right after a backslash
        self.string_bytes = 0  # ... of which this many bytes are read so far

    def feed(self, chunk: bytes) -> None:
        if self.in_string:
            start = 1 if self.escape else 0
            m = _REST.match(chunk, start)
            if m is None:
                self._string_tail(chunk[start:])
                self._grow_string(len(chunk))
                return
            self._grow_string(m.end())
            self.in_string = self.escape = False
            chunk = chunk[m.end() :]
        stripped = _STRING.sub(b"", chunk + _SENTINEL)
        if stripped.endswith(_SENTINEL):
            stripped = stripped[: -len(_SENTINEL)]  # every string closed within the chunk
        else:
            # The sentinel's quote closed a string the chunk left open.
            self.in_string = True
            self.string_bytes = 0  # counted from the next chunk: the limit, plus one chunk
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

    def _grow_string(self, n: int) -> None:
        self.string_bytes += n
        if self.string_bytes > MAX_STRING_BYTES:
            raise ValueError(f"a string longer than {MAX_STRING_BYTES // 1024} KiB")

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
        raise _not_members(path, secrets.scrub_quoted(head)[:80])
    try:
        DepthGuard().feed(body)
        # Masked as any answer is: in the bytes, then in what escapes spelled.
        value = secrets.loads(secrets.scrub(body))
    except (ValueError, RecursionError) as exc:
        raise _not_json(path, exc, secrets.scrub_quoted) from None
    items = value.get("items") if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise _not_members(path, b"")
    count = value.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and count > len(items):
        # A page of a longer list (or a list cut short): the members not in it would be
        # taken for non-members (a removal "not a member", a sync adding them again).
        raise ProtocolError(
            f"the server's answer says the instance has {count:,} members but lists "
            f"{len(items):,}; a member list read in part is not used",
            status=200,
            method="GET",
            path=path,
        )
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
    members = 0
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
                        raise _not_members(path, secrets.scrub_quoted(first)[:80])
            if not saw_items:
                window = tail + chunk
                saw_items = b'"items"' in window
                tail = window[-6:]
            guard.feed(chunk)
            parser.send(chunk)
            if found:
                for item in found:
                    if isinstance(item, dict):
                        members += 1
                        yield secrets.scrub_value(item) if walk else item
                del found[:]
        parser.close()
    except (ijson.JSONError, ValueError) as exc:
        raise _not_json(path, exc, secrets.scrub_quoted) from None
    for item in found:
        if isinstance(item, dict):
            members += 1
            yield secrets.scrub_value(item) if walk else item
    if not saw_items or not members:
        # Over WHOLE_BODY_BYTES and not one member at items[]: the list is elsewhere
        # ({"result": {"items": [...]}}) or not a list. Read as "no members", a sync
        # would plan against an empty instance.
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
