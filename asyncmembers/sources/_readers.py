"""The three readers: CSV (``csv.reader``), JSON Lines (``json``), JSON arrays (``ijson``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Mapping
from typing import IO, Any, Final

import ijson  # type: ignore[import-untyped]

from ._input import MAX_ROW_BYTES
from ._row import ColumnMap, SourceError, SourceRow, map_columns, normalise, show_json

__all__ = [
    "CsvHeader",
    "csv_header",
    "csv_rows",
    "json_rows",
    "jsonl_rows",
    "open_text",
]

#: Delimiters a CSV header is sniffed for, the first winning a tie.
DELIMITERS: Final = (",", ";", "\t", "|")

Rows = Generator[SourceRow, None, None]

# The csv module's own cap on a field (128 KiB by default) must not cut below ours.
if csv.field_size_limit() <= MAX_ROW_BYTES:
    csv.field_size_limit(MAX_ROW_BYTES + 1)


class _TooLong(Exception):
    pass


# --------------------------------------------------------------------------------------
# CSV


class _Lines:
    """The text stream's lines for ``csv.reader``, each record bounded in size.

    ``size`` counts the characters of the record being read (reset by the reader after
    each record); ``eof`` is set once the stream is exhausted.
    """

    __slots__ = ("_pending", "_readline", "eof", "size")

    def __init__(self, text: IO[str]) -> None:
        self._readline = text.readline
        self._pending: list[str] = []
        self.size = 0
        self.eof = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._pending:
            line = self._pending.pop()
        else:
            # readline's limit is what bounds endless input without a line break.
            line = self._readline(MAX_ROW_BYTES + 1)
            if not line:
                self.eof = True
                raise StopIteration
        self.size += len(line)
        if self.size > MAX_ROW_BYTES:
            raise _TooLong
        return line

    def push_back(self, lines: list[str]) -> None:
        self._pending.extend(reversed(lines))
        self.size = 0


def _sniff_delimiter(line: str) -> str:
    counts = [(line.count(d), -i, d) for i, d in enumerate(DELIMITERS)]
    best = max(counts)
    return best[2] if best[0] else ","


class CsvHeader:
    """The CSV header: its columns and line, the column map, and the reader after it."""

    __slots__ = ("columns", "delimiter", "line", "lines", "map", "reader")

    def __init__(
        self,
        columns: tuple[str, ...],
        line: int,
        delimiter: str,
        reader: Any,
        lines: _Lines,
        column_map: ColumnMap,
    ) -> None:
        self.columns = columns
        self.line = line
        self.delimiter = delimiter
        self.reader = reader
        self.lines = lines
        self.map = column_map


_NOT_CONTENT: Final = frozenset(' ,;\t|"\r\n\ufeff')


def _has_content(line: str) -> bool:
    return any(c not in _NOT_CONTENT and not c.isspace() for c in line)


def _too_long(name: str, line: int, what: str) -> SourceError:
    return SourceError(
        f"{name}: line {line}: {what} is longer than the limit of {MAX_ROW_BYTES:,} "
        "characters; nothing after it was read (is it a CSV file? a quoted field may be "
        "missing its closing quote)",
        line=line,
    )


def csv_header(
    text: IO[str],
    name: str,
    *,
    delimiter: str | None,
    overrides: Mapping[str, str | None],
    default_role: str | None,
) -> CsvHeader:
    """Read up to the header row (sniffing the delimiter from it) and map its columns."""
    lines = _Lines(text)
    seen: list[str] = []
    first: str | None = None
    try:
        for line in lines:
            seen.append(line)
            lines.size = 0
            if _has_content(line):
                first = line
                break
    except _TooLong:
        raise _too_long(name, len(seen) + 1, "the header row") from None
    if first is None:
        raise SourceError(f"{name}: no header row: the file is empty", line=1)
    at = len(seen)
    if "\x00" in first:
        raise SourceError(
            f"{name}: line {at}: the header row holds a NUL byte (is the file UTF-16? give "
            "its encoding, e.g. utf-16)",
            line=at,
        )
    if any("\udc80" <= c <= "\udcff" for c in first):
        raise SourceError(
            f"{name}: line {at}: the header row is not valid in the file's encoding "
            "(UTF-8 unless given); give the encoding, e.g. cp1252 or latin-1",
            line=at,
        )
    sep = delimiter if delimiter is not None else _sniff_delimiter(first)
    lines.push_back(seen)
    reader = csv.reader(lines, delimiter=sep)
    while True:
        start = reader.line_num + 1
        lines.size = 0
        try:
            cells = next(reader)
        except StopIteration:
            raise SourceError(f"{name}: no header row: the file is empty", line=1) from None
        except _TooLong:
            raise _too_long(name, start, "the header row") from None
        except csv.Error as exc:
            raise SourceError(f"{name}: line {start}: the header row: {exc}", line=start) from None
        if lines.eof:
            raise SourceError(
                f"{name}: line {start}: the header row has a quoted field that is never closed",
                line=start,
            )
        if "".join(cells).strip():
            break
    columns = tuple(cell if cell.strip() else f"column {i}" for i, cell in enumerate(cells, 1))
    shown = ", ".join(columns)
    where = f"{name}: line {start}: the header row"
    firsts: dict[str, int] = {}
    for i, column in enumerate(columns, 1):
        key = column.strip().casefold()
        if key in firsts:
            raise SourceError(
                f"{where} names the column {column.strip()!r} twice (columns {firsts[key]} "
                f"and {i})",
                line=start,
            )
        firsts[key] = i
    column_map = map_columns(columns, overrides=overrides, default_role=default_role)
    if column_map.problem is not None:
        raise SourceError(f"{where} {column_map.problem}", line=start)
    for field, wanted in overrides.items():
        if wanted is not None and field not in column_map.keys:
            option = {"userId": "user_id"}.get(field, field)
            raise SourceError(
                f"{where} has no column {wanted!r} (named by {option}_column=); columns: {shown}",
                line=start,
            )
    if "role" not in column_map.keys and default_role is None:
        raise SourceError(
            f"{where} has no role column (columns: {shown}); name it with role_column= "
            "or give default_role=",
            line=start,
        )
    if "email" not in column_map.keys and "userId" not in column_map.keys:
        raise SourceError(
            f"{where} has neither an email nor a userId column (columns: {shown}); name "
            "one with email_column= or user_id_column=",
            line=start,
        )
    return CsvHeader(columns, start, sep, reader, lines, column_map)


def csv_rows(header: CsvHeader, name: str) -> Rows:
    """The data rows after the header; every record is one row, with its start line."""
    reader, lines, columns = header.reader, header.lines, header.columns
    keys, fallbacks = header.map.keys, header.map.fallbacks
    default_role = header.map.default_role
    width = len(columns)
    index = 0
    while True:
        start = reader.line_num + 1
        lines.size = 0
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _TooLong:
            raise _too_long(name, start, "the row") from None
        except csv.Error as exc:
            # The reader starts afresh on the next line: a per-row problem.
            yield SourceRow(
                line=start, index=index, fields={}, columns=columns, problem=f"not valid CSV: {exc}"
            )
            index += 1
            continue
        if lines.eof:
            raise SourceError(
                f"{name}: line {start}: a quoted field that starts on this row is never "
                "closed (the file ends inside it)",
                line=start,
            )
        if not "".join(cells).strip():
            continue  # blank lines and ",,," rows are not rows
        problem = None
        if len(cells) == width:
            fields = dict(zip(columns, cells, strict=True))
        else:
            problem = f"row has {len(cells)} cells but the header has {width} columns"
            fields = dict(zip(columns, cells, strict=False))
            for i in range(width, len(cells)):
                fields[f"column {i + 1}"] = cells[i]
        yield SourceRow(
            line=start,
            index=index,
            fields=fields,
            keys=keys,
            columns=columns,
            problem=problem,
            fallbacks=fallbacks,
            default_role=default_role,
        )
        index += 1


# --------------------------------------------------------------------------------------
# JSON


class _Object(dict[str, Any]):
    """A JSON object that remembers the first key it saw twice (the parsers keep the last)."""

    duplicate: str | None = None


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicate = key
                break
            seen.add(key)
    return obj


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_pairs)
_CACHE_SIZE: Final = 256


class _Objects:
    """Turns parsed JSON values into rows; the column map is found once per key set."""

    def __init__(self, overrides: Mapping[str, str | None], default_role: str | None) -> None:
        self._overrides = overrides
        self._default_role = default_role
        self._maps: dict[tuple[str, ...], ColumnMap] = {}

    def row(
        self,
        value: Any,
        *,
        line: int | None,
        element: int | None,
        index: int,
        problem: str | None,
        text: str | None = None,
    ) -> SourceRow:
        """The row of one JSON value; ``text``: the line as read, when it is no JSON."""
        if problem is None and not isinstance(value, dict):
            problem = f"expected a JSON object, got {show_json(value)}"
            text = json.dumps(value, ensure_ascii=False)
        if problem is not None:
            # The text goes to the error report's ``extra`` (as "row"): a row that is no
            # JSON object must still be there to fix in place, not only its line number.
            fields = {} if text is None else {"row": text}
            return SourceRow(
                line=line, element=element, index=index, fields=fields, problem=problem
            )
        names = tuple(value)
        column_map = self._maps.get(names)
        if column_map is None:
            if len(self._maps) >= _CACHE_SIZE:
                self._maps.clear()  # a file whose objects all differ: no unbounded growth
            column_map = map_columns(
                names, overrides=self._overrides, default_role=self._default_role
            )
            self._maps[names] = column_map
        problem_field = column_map.problem_field
        problem = column_map.problem
        duplicate = getattr(value, "duplicate", None)
        if problem is None and duplicate is not None:
            problem = f"repeats the key {duplicate!r}"
            problem_field = _field_of(duplicate)
        return SourceRow(
            line=line,
            element=element,
            index=index,
            fields=dict(value),
            keys=column_map.keys,
            problem=problem,
            problem_field=problem_field,
            fallbacks=column_map.fallbacks,
            default_role=column_map.default_role,
        )


def _field_of(key: str) -> str | None:
    norm = normalise(key)
    return {"email": "email", "userid": "userId", "role": "role"}.get(norm)


def jsonl_rows(
    stream: IO[bytes],
    name: str,
    *,
    overrides: Mapping[str, str | None],
    default_role: str | None,
) -> Rows:
    """One row per non-blank line of UTF-8 JSON; a bad line is a row error."""
    objects = _Objects(overrides, default_role)
    line = 0
    index = 0
    first = True
    while True:
        data = stream.readline(MAX_ROW_BYTES + 1)
        if not data:
            return
        line += 1
        if len(data) > MAX_ROW_BYTES and not data.endswith(b"\n"):
            raise SourceError(
                f"{name}: line {line}: the line is longer than the limit of "
                f"{MAX_ROW_BYTES:,} bytes; nothing after it was read",
                line=line,
            )
        text = data.decode("utf-8", "surrogateescape").strip()
        if not text:
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
        yield objects.row(
            value,
            line=line,
            element=None,
            index=index,
            problem=problem,
            text=None if problem is None else text,
        )
        index += 1


class _Counted:
    """A byte stream that refuses to go more than the record limit past ``mark()``."""

    __slots__ = ("_mark", "_read", "total")

    def __init__(self, stream: IO[bytes]) -> None:
        self._read = stream.read
        self.total = 0
        self._mark = 0

    def read(self, n: int = -1) -> bytes:
        if self.total - self._mark > MAX_ROW_BYTES:
            raise _TooLong
        data = self._read(n)
        self.total += len(data)
        return data

    def mark(self) -> None:
        self._mark = self.total


#: How deep a JSON array element may nest. ijson's own builder has no limit and spends
#: kilobytes per level, so ``[[[[...`` of a megabyte would take gigabytes.
MAX_DEPTH: Final = 64


class _TooDeep(Exception):
    pass


_SCALARS: Final = frozenset(("string", "number", "boolean", "null"))


def _elements(counted: _Counted, name: str) -> Generator[Any, None, None]:
    """The elements of the top-level array, built from ijson's events, depth-bounded.

    The hot path (a scalar in an object) is two comparisons and a store; the enclosing
    containers are kept as (container, is_map, key) so no ``isinstance`` is needed.
    """
    events = ijson.basic_parse(counted, use_float=True)
    for event, _ in events:  # the opening "[" (checked by open_source)
        if event != "start_array":
            raise SourceError(f"{name}: expected a JSON array of members ([...])")
        break
    stack: list[tuple[Any, bool, Any]] = []
    container: Any = None  # None: directly in the top-level array
    is_map = False
    key: Any = None
    for event, value in events:
        if event == "map_key":
            key = value
            continue
        if event not in _SCALARS:
            if event == "start_map" or event == "start_array":
                if len(stack) >= MAX_DEPTH:
                    raise _TooDeep
                stack.append((container, is_map, key))
                is_map = event == "start_map"
                container = _Object() if is_map else []
                key = None
                continue
            if container is None:  # the end of the top-level array
                continue
            value = container
            container, is_map, key = stack.pop()
        if container is None:
            yield value
        elif is_map:
            if key in container and container.duplicate is None:
                container.duplicate = key
            container[key] = value
        else:
            container.append(value)


def _ijson_message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):  # yajl's message, with a copy of the text after it
        arg = arg.decode("utf-8", "replace")
    lines = str(arg).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def json_rows(
    stream: IO[bytes],
    name: str,
    *,
    overrides: Mapping[str, str | None],
    default_role: str | None,
) -> Rows:
    """One row per element of a UTF-8 JSON array, streamed with ijson.

    Errors name the element by its 0-based index; a syntax error stops the reading there
    (a JSON array is one document: there is no reliable next element after it).
    """
    objects = _Objects(overrides, default_role)
    counted = _Counted(stream)
    index = 0
    try:
        for value in _elements(counted, name):
            counted.mark()
            yield objects.row(value, line=None, element=index, index=index, problem=None)
            index += 1
    except _TooLong:
        raise SourceError(
            f"{name}: element {index}: longer than the limit of {MAX_ROW_BYTES:,} bytes; "
            "nothing after it was read"
        ) from None
    except _TooDeep:
        raise SourceError(
            f"{name}: element {index}: nested deeper than {MAX_DEPTH} levels"
        ) from None
    except ijson.JSONError as exc:
        message = _ijson_message(exc)
        if "trailing garbage" in message:
            raise SourceError(
                f"{name}: unexpected data after the JSON array (after element {index - 1})"
            ) from None
        if "premature EOF" in message:
            raise SourceError(
                f"{name}: element {index}: the JSON array is not closed (the file ends inside it)"
            ) from None
        if "UTF8" in message:
            message += "; give the file's encoding, or save it as UTF-8"
        raise SourceError(f"{name}: element {index}: not valid JSON: {message}") from None
    except (RecursionError, ValueError) as exc:
        raise SourceError(f"{name}: element {index}: not valid JSON: {exc}") from None


def open_text(stream: IO[bytes], encoding: str) -> io.TextIOWrapper:
    """A decoding text stream for ``csv``: bad bytes kept as lone surrogates, line ends kept."""
    return io.TextIOWrapper(
        stream,
        encoding=encoding,
        errors="surrogateescape",
        newline="",
    )
