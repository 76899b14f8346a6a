"""The bytes under a member file: opening, peeking at the start, the encoding, transcoding."""

from __future__ import annotations

import codecs
import io
from typing import IO, Final

from ._row import SourceError

__all__ = ["MAX_ROW_BYTES", "Prefixed", "Utf8Stream", "choose_encoding", "peek_start"]

#: The longest record read: a CSV header or row, a JSON line, a JSON array element. 1 MiB
#: (for CSV counted in decoded characters): a 1 MB cell still fits. A longer record is an
#: error at its line that stops the reading, so endless input without a line break (e.g.
#: ``/dev/zero``) ends at once instead of filling memory.
MAX_ROW_BYTES: Final = 1024 * 1024

CHUNK: Final = 64 * 1024
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Prefixed(io.RawIOBase):
    """A raw stream that gives ``head`` first, then the rest of ``raw`` (never closed here)."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        super().__init__()
        self._head = head
        self._raw = raw
        # read1 returns what is there without waiting for a full buffer (pipes, sockets).
        self._read = getattr(raw, "read1", raw.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = len(buffer)
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
        else:
            data = self._read(n) or b""
        buffer[: len(data)] = data
        return len(data)


def peek_start(raw: IO[bytes]) -> bytes:
    """Read the start of ``raw``: enough to see a BOM and the first non-space character.

    Reads at most :data:`MAX_ROW_BYTES` (whitespace beyond that is as good as none).
    """
    read = getattr(raw, "read1", raw.read)
    head = b""
    while len(head) < MAX_ROW_BYTES:
        more = read(CHUNK)
        if not more:
            break
        head += more
        if len(head) >= 4 and head.lstrip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
            break
    return head


def choose_encoding(head: bytes, encoding: str | None, name: str) -> str:
    """The codec to read with: a byte order mark wins; else ``encoding``; else UTF-8."""
    if encoding is not None:
        _check_text_encoding(encoding)
    for bom, codec in _BOMS:
        if head.startswith(bom):
            if encoding is not None and _family(encoding) not in (_family(codec), "utf8"):
                raise SourceError(
                    f"{name}: the file starts with a {codec.upper()} byte order mark, but "
                    f"the encoding given is {encoding!r}; leave the encoding out",
                    line=1,
                )
            return codec
    if encoding is None:
        return "utf-8"
    return encoding


def _check_text_encoding(encoding: str) -> None:
    """Refuse a name that is no codec, or a codec that is not a text encoding.

    ``rot13``, ``hex``, ``base64``, ``zlib`` are codecs, but not between bytes and text:
    the text reader would fail on them with a LookupError. ``str.encode`` refuses exactly
    those (the same check ``io.TextIOWrapper`` makes), through public API.
    """
    try:
        codecs.lookup(encoding)
        "".encode(encoding)
    except LookupError as exc:
        if "is not a text encoding" in str(exc):
            problem = f"encoding {encoding!r} is not a text encoding"
        else:
            problem = f"unknown encoding {encoding!r}"
        raise SourceError(
            f"{problem}; use a Python codec name such as utf-8, utf-16, cp1252 or latin-1"
        ) from None


def _family(codec: str) -> str:
    name = codecs.lookup(codec).name  # "utf-8-sig", "utf-16", "utf-16-le", ...
    return name.replace("-", "").replace("sig", "").removesuffix("le").removesuffix("be")


class Utf8Stream(io.RawIOBase):
    """Bytes in another encoding, read back as UTF-8 (for the JSON parsers).

    Undecodable bytes become lone surrogates, which are written as ``\\xNN`` text, so the
    JSON parsers see valid UTF-8 and the member check still reports the field.
    """

    def __init__(self, raw: IO[bytes], encoding: str) -> None:
        super().__init__()
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._eof:
            data = self._raw.read(CHUNK)
            self._eof = not data
            text = self._decoder.decode(data, final=self._eof)
            self._pending = text.encode("utf-8", "backslashreplace")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
