"""Incremental parsing of a streamed Instance Members body (ijson), with a depth guard.

ijson keeps a prefix string per nesting level, so a hostile body nested 100,000 deep
costs memory quadratic in the depth (17 GB was measured). :class:`DepthGuard` looks at
each chunk before ijson does and refuses nesting deeper than :data:`MAX_DEPTH`; members
are about five levels deep. The guard costs about 30 ms per 10 MB (C regex, then a loop
over the brackets only).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final

from .errors import ProtocolError

__all__ = ["MAX_DEPTH", "DepthGuard", "iter_members"]

#: The deepest nesting accepted in a streamed answer.
MAX_DEPTH: Final = 64

# A complete JSON string (the "unrolled loop" form: ten times faster than an alternation).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
# The rest of a string that began in an earlier chunk, up to its closing quote.
_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


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
    chunks: AsyncIterator[bytes], path: str, scrub: Callable[[bytes], bytes]
) -> AsyncGenerator[dict[str, Any]]:
    """The object ``items`` of an Instance Members body, parsed as the chunks arrive.

    Raises :class:`ProtocolError` for a body that is not JSON, not an object with
    ``items``, or nested deeper than :data:`MAX_DEPTH`. ``scrub`` masks secrets in any
    server text quoted in an error.
    """
    # Imported on the first streamed read, not with the package.
    import ijson  # type: ignore[import-untyped]

    found: list[Any] = ijson.sendable_list()
    parser = ijson.items_coro(found, "items.item")
    guard = DepthGuard()
    started = saw_items = False
    tail = b""
    try:
        async for chunk in chunks:
            if not started:
                head = chunk.lstrip()
                if head:
                    started = True
                    if not head.startswith(b"{"):
                        raise _not_members(path, scrub(head[:80]))
            if not saw_items:
                window = tail + chunk
                saw_items = b'"items"' in window
                tail = window[-6:]
            guard.feed(chunk)
            parser.send(chunk)
            if found:
                for item in found:
                    if isinstance(item, dict):
                        yield item
                del found[:]
        parser.close()
    except (ijson.JSONError, ValueError) as exc:
        # yajl quotes the offending text on the lines after the first: keep the first.
        problem = scrub(str(exc).encode(errors="replace")).decode(errors="replace")
        raise ProtocolError(
            f"the server's answer is not JSON ({problem.splitlines()[0][:120] if problem else 'invalid'})",
            status=200,
            method="GET",
            path=path,
        ) from None
    for item in found:
        if isinstance(item, dict):
            yield item
    if not saw_items:
        raise _not_members(path, b"")


def _not_members(path: str, head: bytes) -> ProtocolError:
    return ProtocolError(
        "the server's answer does not look like InstanceMembers (an object with items)"
        + (f": {head!r}" if head else ""),
        status=200,
        method="GET",
        path=path,
    )
