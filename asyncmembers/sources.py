"""Read members from CSV, JSON Lines or JSON array files, streaming, with line numbers.

:func:`open_source` returns a :class:`Source`: an iterator of :class:`SourceRow` that is
also a context manager owning the file. Rows are produced one at a time from a bounded
buffer, so a ten-million-row file (or an endless pipe) is read in bounded memory and the
bulk importer never makes the reader run far ahead::

    with open_source("members.csv") as rows:
        result = await bulk_import(client, instanceId=..., members=rows)

Each row keeps its 1-based ``line`` (where the record starts), its 0-based ``index`` among
data rows and every original column in ``fields``. Nothing is validated until
:meth:`SourceRow.to_member_post`, which raises :class:`~asyncmembers.errors.ValidationError`
saying where and what (``line 7: email is not a valid email address: 'bob@'``), so a bad
row is still yielded and counted, never silently dropped. :func:`count_rows` estimates
the number of rows of a regular file cheaply (for a progress bar).

``open_source()`` checks what it can at once (the file opens, the format, the CSV header,
the JSON array's ``[``) and raises :class:`SourceError` for those; later problems are
raised while iterating. The file is closed when the iteration ends, on ``close()`` or on
leaving the ``with`` block.

Two kinds of problems
---------------------
*Per-row* (the row is yielded, its ``to_member_post()`` raises, the rest goes on) whenever
the reader can find where the next row starts:

- CSV: more or fewer cells than the header; a row that is not valid UTF-8 (the message
  gives the byte offset; the bad bytes are kept as ``\\xNN`` in ``fields``, so an
  error report never turns them into a valid-looking address); a NUL byte; a row larger
  than :data:`MAX_ROW_BYTES` (its ``fields`` are then empty); a cell the ``csv`` module
  rejects.
- JSON Lines: a line that is not valid JSON, not an object, not UTF-8, or larger than
  :data:`MAX_ROW_BYTES`; an object with duplicate keys.
- JSON array: an element that is not an object, or whose text is not valid UTF-8; an
  object with duplicate keys.
- All formats: a member value that is missing, empty, of the wrong type (a number,
  ``null``, a list) or invalid; two keys or columns that mean the same member field in one
  JSON object (``userId`` and ``user_id``).

*Per-file* (:class:`SourceError`, a one-line message with the file name and line; nothing
after that point can be trusted): the file cannot be opened or read; an unknown format;
a UTF-16/UTF-32 byte order mark; a CSV header that is missing, not UTF-8, contains a NUL
byte, lacks ``role`` or lacks both ``email`` and ``userId``, or repeats a column name; a
quoted CSV field that is never closed (found at the end of the file, after the rows before
it were yielded); a JSON array file that is not an array, has a syntax error, has an
element larger than :data:`MAX_ROW_BYTES`, or is not closed. A JSON array is one
document: after a syntax error there is no reliable way to find the next element, so the
whole file is rejected at that point (use JSON Lines for per-line recovery).

Values
------
CSV header names and JSON keys are matched after stripping surrounding whitespace,
ignoring letter case: ``email``; ``userId`` or ``user_id``; ``role``. Other columns are
ignored for the member but kept in ``fields`` (for the error report). An empty or
whitespace-only value means "absent", so a row with an email and an empty userId is
fine. Values are normalised by :class:`~asyncmembers.models.InstanceMemberPost`:
surrounding whitespace is stripped from all three and ``role`` is lower-cased; email
letter case is kept as given (the API compares emails case-insensitively). In JSON,
member values must be strings: ``null`` or a number is an error naming the field.

CSV details: UTF-8 with or without a BOM, CRLF or LF line ends, ``"``-quoted fields
that may hold commas, quotes (``""``) and line breaks (a row's line is where it starts).
Blank lines, and rows whose cells are all empty (``,,,`` as spreadsheets export), are
skipped and are not rows. Header columns without a name are called ``column N`` (1-based)
in ``fields``; so are cells beyond the header. A member value (``email``, ``userId``,
``role``) that starts with ``'`` followed by one of ``= + - @``, tab or CR has the ``'``
removed: that is the formula guard :mod:`asyncmembers.report` writes, so an error report
re-imports as it was read (no valid role or userId starts that way, and an email
starting with ``'=`` is not worth the ambiguity).

Standard input
--------------
``"-"`` reads the binary standard input (or the ``stdin=`` stream). Without ``format=``
the format is sniffed from the first byte that is not whitespace: ``[`` is a JSON array,
``{`` is JSON Lines, anything else is CSV. Standard input is never closed by the reader.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import stat
import sys
from collections.abc import Generator, Iterator, Mapping
from types import TracebackType
from typing import IO, Any, Final

import attrs

from .errors import ValidationError
from .models import InstanceMemberPost

__all__ = [
    "FORMATS",
    "MAX_ROW_BYTES",
    "Source",
    "SourceError",
    "SourceRow",
    "count_rows",
    "open_source",
]

#: The largest row (CSV record, JSON line or JSON array element) read, in bytes. A longer
#: one is a per-row error (a per-file one in a JSON array). 1 MiB: a 1 MB cell still fits.
MAX_ROW_BYTES: Final = 1024 * 1024

#: The formats :func:`open_source` reads, with the file extensions that select them.
FORMATS: Final[Mapping[str, tuple[str, ...]]] = {
    "csv": (".csv",),
    "jsonl": (".jsonl", ".ndjson"),
    "json": (".json",),
}

_CHUNK: Final = 64 * 1024
_MEMBER_FIELDS: Final = ("email", "userId", "role")
_CANONICAL: Final[Mapping[str, str]] = {
    "email": "email",
    "userid": "userId",
    "user_id": "userId",
    "role": "role",
}
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_WIDE_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_ESCAPED_BYTE: Final = re.compile("[\udc80-\udcff]")
_NOT_JSON_WS: Final = re.compile(r"[^ \t\r\n]")


class SourceError(ValidationError):
    """A member file that cannot be read at all, or past some point.

    The message is one line naming the file and, where there is one, the line; ``line``
    holds that line number (or ``None``).
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        # One line always: a header cell or a file name may hold a line break.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.line = line


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_json(value: object) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:  # a circular structure cannot come from a parser, but be safe
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unguard(value: str) -> str:
    """Undo the report's formula guard: ``'=x`` reads as ``=x``."""
    if len(value) > 1 and value[0] == "'" and value[1] in _FORMULA_START:
        return value[1:]
    return value


@attrs.frozen(slots=True, repr=False)
class SourceRow:
    """One data row of a member file: where it is, what it holds, how to make it a member.

    ``line`` is the 1-based line where the row starts; ``index`` its 0-based position
    among data rows; ``fields`` every original column (CSV) or key (JSON) as read;
    ``columns`` the CSV header (``None`` for JSON); ``keys`` maps ``email``, ``userId``
    and ``role`` to the ``fields`` key that holds each; ``problem`` is set when the reader
    already knows the row is bad (wrong cell count, invalid JSON, ...).
    """

    line: int
    index: int
    fields: dict[str, Any] = attrs.field(hash=False)
    keys: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    columns: tuple[str, ...] | None = None
    problem: str | None = None
    problem_field: str | None = None

    def to_member_post(self) -> InstanceMemberPost:
        """Build the member; raise ``ValidationError`` ("line N: what") naming the field."""
        if self.problem is not None:
            raise ValidationError(f"line {self.line}: {self.problem}", field=self.problem_field)
        values: dict[str, str] = {}
        for name in _MEMBER_FIELDS:
            key = self.keys.get(name)
            if key is None or key not in self.fields:
                continue
            value = self.fields[key]
            if not isinstance(value, str):
                raise ValidationError(
                    f"line {self.line}: {name} must be a string, got {_show_json(value)}",
                    field=name,
                )
            if self.columns is not None:
                value = _unguard(value)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(
                    f"line {self.line}: {name} holds a character that is not valid UTF-8: "
                    f"{_show(value)}",
                    field=name,
                ) from None
            value = value.strip()
            if value:
                values[name] = value
        if "role" not in values:
            raise ValidationError(
                f"line {self.line}: role is missing; give admin or view", field="role"
            )
        if "email" not in values and "userId" not in values:
            raise ValidationError(
                f"line {self.line}: the row needs an email or a userId", field="email"
            )
        try:
            return InstanceMemberPost(
                role=values["role"], email=values.get("email"), user_id=values.get("userId")
            )
        except ValidationError as exc:
            raise ValidationError(f"line {self.line}: {exc.message}", field=exc.field) from exc

    def _summary(self) -> str:
        parts = []
        for name in _MEMBER_FIELDS:
            key = self.keys.get(name)
            if key is not None and key in self.fields:
                parts.append(f"{name}={_show(self.fields[key], 40)}")
        return f"line {self.line}" + (": " + " ".join(parts) if parts else "")

    def __str__(self) -> str:
        return self._summary()

    def __repr__(self) -> str:
        return f"SourceRow({self._summary()})"


# --------------------------------------------------------------------------------------
# Byte input


class _Input:
    """A binary stream with a pushback prefix; ``offset`` counts bytes handed out."""

    __slots__ = ("_prefix", "_raw", "offset")

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._prefix = b""
        self.offset = 0

    def peek(self, n: int) -> bytes:
        """Return up to ``n`` bytes without consuming them (fewer only at end of input)."""
        while len(self._prefix) < n:
            more = self._raw.read(n - len(self._prefix))
            if not more:
                break
            self._prefix += more
        return self._prefix[:n]

    def skip(self, n: int) -> None:
        self._prefix = self._prefix[n:]
        self.offset += n

    def read(self, n: int) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:n], self._prefix[n:]
        else:
            out = self._raw.read(n)
        self.offset += len(out)
        return out

    def readline(self, limit: int) -> bytes:
        """Read up to and including ``\\n``, at most ``limit`` bytes."""
        if self._prefix:
            end = self._prefix.find(b"\n", 0, limit)
            cut = end + 1 if end >= 0 else min(limit, len(self._prefix))
            out, self._prefix = self._prefix[:cut], self._prefix[cut:]
            if end < 0 and not self._prefix and len(out) < limit:
                out += self._raw.readline(limit - len(out))
        else:
            out = self._raw.readline(limit)
        self.offset += len(out)
        return out


def _check_bom(inp: _Input, name: str) -> None:
    """Skip a UTF-8 byte order mark; reject UTF-16 and UTF-32 ones."""
    head = inp.peek(4)
    if head.startswith(_UTF8_BOM):
        inp.skip(len(_UTF8_BOM))
        return
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            raise SourceError(
                f"{name}: the file is {encoding} (it starts with a {encoding} byte order "
                "mark); save it as UTF-8",
                line=1,
            )


def _sniff(inp: _Input) -> str:
    """Guess the format from the first byte that is not whitespace (for stdin)."""
    size = _CHUNK
    while True:
        head = inp.peek(size)
        text = head[len(_UTF8_BOM) :] if head.startswith(_UTF8_BOM) else head
        stripped = text.lstrip()
        if stripped:
            return {ord("["): "json", ord("{"): "jsonl"}.get(stripped[0], "csv")
        if len(head) < size or size >= MAX_ROW_BYTES:
            return "csv"
        size *= 2


# --------------------------------------------------------------------------------------
# CSV

# Quote-tracking states, following the csv module's default dialect (non-strict): a quote
# opens a quoted field only at the start of a field; inside one, "" is a quote; after the
# closing quote the rest of the field is plain text.
_START, _FIELD, _QUOTED, _QUOTE = range(4)
_DQUOTE, _COMMA = ord('"'), ord(",")


def _scan(data: bytes, state: int) -> int:
    """Return the quote state after ``data`` (bytes: UTF-8 never hides ``"`` or ``,``)."""
    if state != _QUOTED and b'"' not in data and data:
        return _START if data.endswith(b",") else _FIELD  # the common case: no quotes
    i, n = 0, len(data)
    while i < n:
        if state == _START:
            if data[i] == _DQUOTE:
                state = _QUOTED
                i += 1
                continue
            state = _FIELD
        if state == _FIELD:
            j = data.find(b",", i)
            if j < 0:
                return _FIELD
            i, state = j + 1, _START
        elif state == _QUOTED:
            j = data.find(b'"', i)
            if j < 0:
                return _QUOTED
            i, state = j + 1, _QUOTE
        else:  # _QUOTE: just after a quote inside a quoted field
            c = data[i]
            if c == _DQUOTE:
                state, i = _QUOTED, i + 1
            elif c == _COMMA:
                state, i = _START, i + 1
            else:
                state = _FIELD
    return state


@attrs.define(slots=True)
class _Record:
    line: int
    offset: int
    data: bytes
    too_big: bool
    unterminated: bool


def _csv_records(inp: _Input) -> Iterator[_Record]:
    """Split the input into CSV records, tracking quotes, in bounded memory."""
    line = 0  # physical lines completed
    while True:
        start_line, start_offset = line + 1, inp.offset
        parts: list[bytes] = []
        size, too_big, state, eof = 0, False, _START, False
        while True:
            piece = inp.readline(_CHUNK)
            if not piece:
                eof = True
                break
            size += len(piece)
            if not too_big:
                if size > MAX_ROW_BYTES:
                    too_big = True
                    parts.clear()
                else:
                    parts.append(piece)
            state = _scan(piece, state)
            if piece.endswith(b"\n"):
                line += 1
                if state != _QUOTED:
                    break
        if size == 0:
            return
        yield _Record(start_line, start_offset, b"".join(parts), too_big, eof and state == _QUOTED)
        if eof:
            return


def _ensure_csv_field_limit() -> None:
    # The csv module's limit is process-wide; only ever raise it, to what a row may hold.
    if csv.field_size_limit() < MAX_ROW_BYTES:
        csv.field_size_limit(MAX_ROW_BYTES)


def _parse_record(rec: _Record) -> tuple[list[str] | None, str | None]:
    """Decode and split a record into cells; return (cells, problem)."""
    problem: str | None = None
    try:
        text = rec.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = rec.data.decode("utf-8", "backslashreplace")
        bad_line = rec.line + rec.data.count(b"\n", 0, exc.start)
        where = f"line {bad_line}, " if bad_line != rec.line else ""
        problem = (
            f"not valid UTF-8 ({where}byte offset {rec.offset + exc.start}: "
            f"{rec.data[exc.start : exc.end]!r}); save the file as UTF-8"
        )
    if problem is None and "\x00" in text:
        nul = rec.offset + rec.data.find(b"\x00")
        problem = f"holds a NUL byte (byte offset {nul})"
    try:
        rows = list(csv.reader([text]))
    except csv.Error as exc:
        if "new-line character" in str(exc):
            # The csv module's hint (universal-newline mode) is about Python, not the file.
            return None, problem or (
                "has a line break (CR) inside an unquoted cell; quote the cell, or save the "
                "file with LF or CRLF line ends"
            )
        return None, problem or f"is not valid CSV: {exc}"
    if len(rows) != 1:
        return None, problem or "is not valid CSV: it does not form exactly one row"
    return rows[0], problem


def _is_blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


def _may_be_blank(data: bytes) -> bool:
    """False when the record surely has a non-blank cell (cheap, before parsing)."""
    rest = data.translate(None, b' \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f,"')
    return not rest or not rest.isascii()  # non-ASCII may be Unicode whitespace


@attrs.frozen(slots=True)
class _Header:
    line: int
    columns: tuple[str, ...]
    keys: Mapping[str, str]


def _read_header(records: Iterator[_Record], name: str) -> _Header:
    for rec in records:
        if not rec.too_big and not rec.data.strip():
            continue
        where = f"{name}: line {rec.line}: the header row"
        if rec.unterminated:
            raise SourceError(f"{where} has a quoted field that is never closed", line=rec.line)
        if rec.too_big:
            raise SourceError(
                f"{where} is larger than {MAX_ROW_BYTES} bytes; is this a member file?",
                line=rec.line,
            )
        try:
            rec.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{where} is not valid UTF-8 (byte offset {rec.offset + exc.start}); "
                "save the file as UTF-8",
                line=rec.line,
            ) from None
        cells, problem = _parse_record(rec)
        if problem is not None or cells is None:
            hint = " (is the file UTF-16?)" if b"\x00" in rec.data else ""
            raise SourceError(f"{where} {problem}{hint}", line=rec.line)
        if _is_blank(cells):
            continue
        return _make_header(cells, rec.line, where)
    raise SourceError(
        f"{name}: no header row: the file is empty; the first row must name the columns, "
        "e.g. email,role or userId,role",
        line=None,
    )


def _make_header(cells: list[str], line: int, where: str) -> _Header:
    columns: list[str] = []
    seen: dict[str, str] = {}
    keys: dict[str, str] = {}
    for number, cell in enumerate(cells, 1):
        column = cell if cell.strip() else f"column {number}"
        folded = column.strip().casefold()
        if folded in seen:
            raise SourceError(
                f"{where} names the column {seen[folded].strip()!r} twice "
                f"(columns {list(seen).index(folded) + 1} and {number}); "
                "rename or remove one",
                line=line,
            )
        seen[folded] = column
        member = _CANONICAL.get(folded)
        if member is not None:
            if member in keys:
                raise SourceError(
                    f"{where} has both {keys[member].strip()!r} and {column.strip()!r} "
                    f"columns, which both mean {member}; keep one",
                    line=line,
                )
            keys[member] = column
        columns.append(column)
    found = ", ".join(c.strip() for c in columns)
    if "role" not in keys:
        raise SourceError(
            f"{where} has no role column (columns: {_clip(found, 100)}); the first row "
            "must name the columns, e.g. email,role or userId,role",
            line=line,
        )
    if "email" not in keys and "userId" not in keys:
        raise SourceError(
            f"{where} has neither an email nor a userId column (columns: "
            f"{_clip(found, 100)}); the first row must name the columns, e.g. email,role",
            line=line,
        )
    return _Header(line, tuple(columns), keys)


def _csv_rows(
    records: Iterator[_Record], header: _Header, name: str
) -> Generator[SourceRow, None, None]:
    index = 0
    width = len(header.columns)
    for rec in records:
        if not rec.too_big and not rec.data.strip():
            continue
        if rec.unterminated:
            raise SourceError(
                f"{name}: line {rec.line}: a quoted field opened in this row is never "
                "closed (a stray '\"'?); the rows from here on cannot be read",
                line=rec.line,
            )
        fields: dict[str, Any] = {}
        if rec.too_big:
            problem: str | None = f"row is larger than the limit of {MAX_ROW_BYTES} bytes"
        else:
            cells, problem = _parse_record(rec)
            if cells is not None:
                if problem is None and _may_be_blank(rec.data) and _is_blank(cells):
                    continue
                for number, cell in enumerate(cells, 1):
                    key = header.columns[number - 1] if number <= width else f"column {number}"
                    fields[key] = cell
                if problem is None and len(cells) != width:
                    problem = f"row has {len(cells)} cells but the header has {width} columns"
        yield SourceRow(
            line=rec.line,
            index=index,
            fields=fields,
            keys=header.keys,
            columns=header.columns,
            problem=problem,
        )
        index += 1


# --------------------------------------------------------------------------------------
# JSON


class _Object(dict[str, Any]):
    """A parsed JSON object that remembers keys it saw more than once."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    tagged = _Object(obj)
    seen: set[str] = set()
    tagged.duplicates = []
    for key, _ in pairs:
        if key in seen:
            tagged.duplicates.append(key)
        seen.add(key)
    return tagged


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_pairs_hook)


def _object_row(value: Any, line: int, index: int, problem: str | None) -> SourceRow:
    """A row from a parsed JSON value (Lines or array element)."""
    if not isinstance(value, dict):
        return SourceRow(
            line=line,
            index=index,
            fields={},
            problem=problem or f"expected a JSON object, got {_show_json(value)}",
        )
    problem_field: str | None = None
    keys: dict[str, str] = {}
    for key in value:
        member = _CANONICAL.get(key.strip().casefold())
        if member is None:
            continue
        if member in keys and problem is None:
            problem = f"has both {keys[member]!r} and {key!r}, which both mean {member}"
            problem_field = member
        keys.setdefault(member, key)
    if isinstance(value, _Object) and problem is None:
        problem = f"repeats the key {value.duplicates[0]!r}"
        problem_field = _CANONICAL.get(value.duplicates[0].strip().casefold())
    return SourceRow(
        line=line,
        index=index,
        fields=dict(value),
        keys=keys,
        problem=problem,
        problem_field=problem_field,
    )


def _jsonl_rows(inp: _Input, name: str) -> Generator[SourceRow, None, None]:
    line = 0
    index = 0
    first = True
    while True:
        offset = inp.offset
        piece = inp.readline(_CHUNK)
        if not piece:
            return
        line += 1
        parts, size, too_big = [piece], len(piece), False
        while not piece.endswith(b"\n"):
            piece = inp.readline(_CHUNK)
            if not piece:
                break
            size += len(piece)
            if size > MAX_ROW_BYTES:
                too_big = True
                parts.clear()
            elif not too_big:
                parts.append(piece)
        if too_big:
            yield SourceRow(
                line=line,
                index=index,
                fields={},
                problem=f"line is larger than the limit of {MAX_ROW_BYTES} bytes",
            )
            index += 1
            first = False
            continue
        data = b"".join(parts).strip()
        if not data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield SourceRow(
                line=line,
                index=index,
                fields={},
                problem=(
                    f"not valid UTF-8 (byte offset {offset + exc.start}: "
                    f"{data[exc.start : exc.end]!r}); save the file as UTF-8"
                ),
            )
            index += 1
            first = False
            continue
        problem = None
        value: Any = None
        try:
            value = _DECODER.decode(text)
        except RecursionError:
            problem = "is not valid JSON: nested too deeply"
        except ValueError as exc:
            if first and text.startswith("["):
                raise SourceError(
                    f"{name}: line {line}: this looks like a JSON array, not JSON Lines; "
                    "use --format json",
                    line=line,
                ) from None
            problem = f"is not valid JSON: {getattr(exc, 'msg', exc)}"
        first = False
        yield _object_row(value, line, index, problem)
        index += 1


class _JsonText:
    """A sliding window of decoded text over the input, with the line at ``pos``."""

    def __init__(self, inp: _Input) -> None:
        self._inp = inp
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.buf = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def fill(self) -> None:
        if self.pos > _CHUNK:
            self.buf, self.pos = self.buf[self.pos :], 0
        data = self._inp.read(_CHUNK)
        if not data:
            self.eof = True
        self.buf += self._decoder.decode(data, final=not data)

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def line_at(self, pos: int) -> int:
        return self.line + self.buf.count("\n", self.pos, pos)

    def next_char(self) -> str:
        """Skip JSON whitespace; return the next character ("" at end of input)."""
        while True:
            found = _NOT_JSON_WS.search(self.buf, self.pos)
            self.advance(len(self.buf) if found is None else found.start())
            if found is not None:
                return found.group()
            if self.eof:
                return ""
            self.fill()

    def value(self, name: str) -> tuple[Any, bool]:
        """Decode the JSON value at ``pos``; return it and whether its text had bad bytes."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise SourceError(
                    f"{name}: line {self.line}: the JSON is nested too deeply", line=self.line
                ) from None
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self.buf) - 16 or exc.msg.startswith("Unterminated")
                if incomplete and not self.eof and len(self.buf) - self.pos <= MAX_ROW_BYTES:
                    self.fill()
                    continue
                if len(self.buf) - self.pos > MAX_ROW_BYTES:
                    raise SourceError(
                        f"{name}: line {self.line}: an array element is not valid JSON or "
                        f"is larger than the limit of {MAX_ROW_BYTES} bytes",
                        line=self.line,
                    ) from None
                where = self.line_at(exc.pos)
                raise SourceError(
                    f"{name}: line {where}: not valid JSON: {exc.msg}", line=where
                ) from None
            except ValueError as exc:  # e.g. an integer longer than Python converts
                raise SourceError(
                    f"{name}: line {self.line}: not valid JSON: {exc}", line=self.line
                ) from None
            if end == len(self.buf) and not self.eof:
                self.fill()  # a number at the end of the window may go on
                continue
            bad = _ESCAPED_BYTE.search(self.buf, self.pos, end) is not None
            self.advance(end)
            return value, bad


def _json_start(inp: _Input, name: str) -> _JsonText:
    text = _JsonText(inp)
    first = text.next_char()
    if first != "[":
        what = "the file is empty" if not first else f"it starts with {first!r}"
        hint = "; for one object per line use --format jsonl" if first == "{" else ""
        raise SourceError(
            f"{name}: line {text.line}: expected a JSON array of members ([...]), but {what}{hint}",
            line=text.line,
        )
    text.advance(text.pos + 1)
    return text


def _json_rows(text: _JsonText, name: str) -> Generator[SourceRow, None, None]:
    index = 0
    c = text.next_char()
    if c == "]":
        text.advance(text.pos + 1)
    else:
        while True:
            if c == "":
                raise SourceError(
                    f"{name}: line {text.line}: the JSON array is not closed (missing ']')",
                    line=text.line,
                )
            line = text.line
            value, bad = text.value(name)
            problem = None
            if bad:
                problem = "is not valid UTF-8; save the file as UTF-8"
            yield _object_row(value, line, index, problem)
            index += 1
            c = text.next_char()
            if c == "]":
                text.advance(text.pos + 1)
                break
            if c != ",":
                found = "the end of the file" if c == "" else repr(c)
                raise SourceError(
                    f"{name}: line {text.line}: expected ',' or ']' after an array "
                    f"element, found {found}",
                    line=text.line,
                )
            text.advance(text.pos + 1)
            c = text.next_char()
            if c == "]":
                raise SourceError(
                    f"{name}: line {text.line}: a ',' is followed by ']' (JSON allows no "
                    "trailing comma)",
                    line=text.line,
                )
    c = text.next_char()
    if c:
        raise SourceError(
            f"{name}: line {text.line}: unexpected data after the JSON array: {c!r}",
            line=text.line,
        )


# --------------------------------------------------------------------------------------
# Opening


def _resolve_format(source: str | os.PathLike[str], fmt: str | None) -> str | None:
    """The format asked for, or the one the extension names; ``None`` means sniff stdin."""
    if fmt is not None:
        wanted = fmt.strip().lower()
        if wanted == "ndjson":
            wanted = "jsonl"
        if wanted not in FORMATS:
            raise SourceError(f"unknown format {fmt!r}; use --format csv|jsonl|json")
        return wanted
    text = os.fspath(source)
    if text == "-":
        return None
    ext = os.path.splitext(text)[1].lower()
    for name, extensions in FORMATS.items():
        if ext in extensions:
            return name
    raise SourceError(
        f"{text}: cannot tell the format from the extension {ext or '(none)'!r}; "
        "name the file .csv, .jsonl or .json, or use --format csv|jsonl|json"
    )


def _os_message(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


class Source(Iterator[SourceRow]):
    """The rows of a member file: an iterator and a context manager that owns the file.

    Iterating yields :class:`SourceRow` objects lazily and raises :class:`SourceError`
    (a per-file problem) or nothing else. The file is closed when the iteration ends, on
    :meth:`close` or on leaving the ``with`` block; prefer ``with`` so an import that
    stops early closes it at once. Standard input is never closed.
    """

    def __init__(
        self,
        name: str,
        fmt: str,
        rows: Generator[SourceRow, None, None],
        stream: IO[bytes] | None,
        columns: tuple[str, ...] | None,
    ) -> None:
        #: The file name as given, or ``<stdin>``.
        self.name = name
        #: ``csv``, ``jsonl`` or ``json``.
        self.format = fmt
        #: The CSV header's column names as written (``None`` for JSON).
        self.columns = columns
        self._rows: Generator[SourceRow, None, None] | None = rows
        self._stream = stream

    def __iter__(self) -> Source:
        return self

    def __next__(self) -> SourceRow:
        if self._rows is None:
            raise StopIteration
        try:
            return next(self._rows)
        except StopIteration:
            self.close()
            raise
        except SourceError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise SourceError(f"{self.name}: cannot read: {_os_message(exc)}") from exc

    def close(self) -> None:
        """Stop reading and close the file (not standard input). Safe to call twice."""
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.close()
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._rows is None else "open"
        return f"<Source {self.name!r} format={self.format} {state}>"


def open_source(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    stdin: IO[bytes] | None = None,
) -> Source:
    """Open a member file (``-`` for standard input) and return its rows, lazily.

    ``format`` is ``csv``, ``jsonl`` (or ``ndjson``) or ``json``; without it the
    extension decides (``.csv``, ``.jsonl``/``.ndjson``, ``.json``), and standard input
    is sniffed (``[`` JSON array, ``{`` JSON Lines, else CSV). ``stdin`` replaces
    ``sys.stdin.buffer`` for ``-``. A CSV header or the opening ``[`` of a JSON array is
    checked here, so a file that cannot be read at all raises :class:`SourceError` now.
    """
    fmt = _resolve_format(source, format)
    is_stdin = os.fspath(source) == "-"
    name = "<stdin>" if is_stdin else os.fspath(source)
    owned: IO[bytes] | None = None
    if is_stdin:
        raw: IO[bytes] = stdin if stdin is not None else sys.stdin.buffer
        given: object = raw
        if isinstance(given, io.TextIOWrapper):  # a text stream given by mistake: use its bytes
            raw = given.buffer
    else:
        try:
            owned = raw = open(source, "rb")  # noqa: SIM115 - Source owns and closes it
        except OSError as exc:
            raise SourceError(f"{name}: cannot open: {_os_message(exc)}") from exc
    try:
        inp = _Input(raw)
        if fmt is None:
            fmt = _sniff(inp)
        _check_bom(inp, name)
        columns: tuple[str, ...] | None = None
        rows: Generator[SourceRow, None, None]
        if fmt == "csv":
            _ensure_csv_field_limit()
            records = _csv_records(inp)
            header = _read_header(records, name)
            columns = header.columns
            rows = _csv_rows(records, header, name)
        elif fmt == "jsonl":
            rows = _jsonl_rows(inp, name)
        else:
            rows = _json_rows(_json_start(inp, name), name)
    except OSError as exc:
        if owned is not None:
            owned.close()
        raise SourceError(f"{name}: cannot read: {_os_message(exc)}") from exc
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    return Source(name, fmt, rows, owned, columns)


def count_rows(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
) -> int | None:
    """A fast estimate of the number of rows, for a progress bar; ``None`` if unknown.

    Counts line breaks (about 1 GB/s) in a regular CSV or JSON Lines file: blank lines
    and line breaks inside quoted CSV fields are counted too, so this is an upper bound.
    ``None`` for standard input, pipes and other non-regular files, JSON arrays, files
    that cannot be read and unknown formats; this never raises for bad input.
    """
    try:
        fmt = _resolve_format(source, format)
    except SourceError:
        return None
    if fmt is None or fmt == "json":
        return None
    try:
        if not stat.S_ISREG(os.stat(source).st_mode):
            return None
        lines = 0
        last = b"\n"
        with open(source, "rb") as f:
            while chunk := f.read(MAX_ROW_BYTES):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0) if fmt == "csv" else lines
