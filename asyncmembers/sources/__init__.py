"""Read members from CSV, JSON Lines or JSON array files, streaming, with where each row is.

:func:`open_source` takes a path, ``"-"`` (standard input), ``bytes`` or a binary file
object, and returns a :class:`Source`: an iterator of :class:`SourceRow` that is also a
context manager owning the file. Rows are read one at a time, so a ten-million-row file
(or an endless pipe) is read in bounded memory::

    with open_source("members.csv") as rows:
        result = await bulk_import(client, instanceId=..., members=rows)

Each row keeps where it is (``line``, 1-based, where the record starts; for a JSON array
``element``, its 0-based index), its 0-based ``index`` among data rows and every original
column in ``fields``. Nothing is validated until :meth:`SourceRow.to_member_post`, which
raises :class:`~asyncmembers.errors.ValidationError` saying where and what
(``line 7: email is not a valid email address: 'bob@'``, ``element 3: role is missing``),
so a bad row is still yielded and counted, never silently dropped.

The readers are the standard library's: ``csv.reader`` over a decoding text stream, the
``json`` module for JSON Lines, and ``ijson`` (incremental) for JSON arrays.

Columns
-------
Header names (CSV) and keys (JSON) are matched through :data:`COLUMN_ALIASES`, ignoring
letter case, spaces, ``_``, ``-`` and ``.``: ``email`` also as Google Workspace's
``Email Address [Required]`` / ``Primary Email``, ``primaryEmail``, Azure AD's ``mail`` /
``userPrincipalName``, Okta's ``login``; ``userId`` (``user_id``, ``Losant User ID``);
``role`` (``Member Role``, ...). A userId value of the form ``provider|id`` (Auth0's
``user_id``) is an identity provider's id, not a Losant userId, and counts as absent. When several email columns are present the first alias
listed is used, and a row whose cell there is blank takes the next one's value.
``email_column=``, ``user_id_column=``, ``role_column=`` name any other column (that
column only). ``default_role=`` (``admin`` or ``view``) is the role of a row without
one: when there is no role column, and for a blank role cell. Other columns are kept in
``fields`` (for the error report). A blank value means "absent". Values are normalised
by :class:`~asyncmembers.models.InstanceMemberPost` (whitespace stripped, role
lower-cased, email case kept).

CSV
---
The delimiter is sniffed from the header line (``,`` ``;`` tab ``|``; the most frequent
wins, ``,`` on a tie) unless ``delimiter=`` is given. A UTF-8 BOM is skipped; a UTF-16 or
UTF-32 BOM selects that encoding; otherwise the text is UTF-8 unless ``encoding=`` names
another codec (``cp1252``, ``latin-1``, ``utf-16``...). Bytes that do not decode are kept
(as lone surrogates) and only the member columns must decode: a ``Zoë`` in Latin-1 in a
``name`` column is fine, the same in ``email`` fails that row saying so. CRLF, LF or CR
line ends; ``"``-quoted fields with delimiters, ``""`` and line breaks (a row's line is
where it starts). Blank lines and rows whose cells are all blank (``,,,``) are not rows.
Header columns without a name are called ``column N`` (1-based); so are cells beyond the
header. A member value starting with ``'`` followed by ``= + - @``, tab or CR loses the
``'``: that is the formula guard of :mod:`asyncmembers.report`, so an error report
re-imports as it was read.

Limits and errors
-----------------
*Per-row* (the row is yielded, its ``to_member_post()`` raises, the rest goes on): a row
with more or fewer cells than the header; a cell the ``csv`` module rejects; a member
value that does not decode; a JSON line that is not valid JSON or not an object; an
object with duplicate keys or two keys of one alias (``userId`` and ``user_id``); a
member value missing, blank, not a string, or invalid.

*Per-file* (:class:`SourceError`, one line naming the file and the line or element;
rows before it were yielded): the file cannot be opened or read; an unknown format or
encoding; a CSV header that is missing, holds a NUL byte (a UTF-16 file without BOM),
does not decode, repeats a column name, lacks the role (without ``default_role``) or
both email and userId, or lacks a column named by ``*_column=``; a quoted CSV field
never closed; a JSON array that is not an array, not valid JSON, or not closed (a JSON
array is one document: after a syntax error there is no reliable next element; use
JSON Lines for per-line recovery); and any record (header, row, JSON line, array
element) longer than :data:`MAX_ROW_BYTES` (1 MiB), so endless input without a line
break ends at once with that error.

Standard input, bytes and file objects
--------------------------------------
``"-"`` reads the binary standard input (or the ``stdin=`` stream); ``bytes`` and binary
file objects (an upload in a web app) are read the same way, and are never closed by the
reader. Without ``format=`` their format is sniffed from the first character that is not
whitespace: ``[`` is a JSON array, ``{`` is JSON Lines, anything else is CSV.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import IO, Final

from ._input import CHUNK, MAX_ROW_BYTES, Prefixed, Utf8Stream, choose_encoding, peek_start
from ._readers import DELIMITERS, csv_header, csv_rows, json_rows, jsonl_rows, open_text
from ._row import COLUMN_ALIASES, SourceError, SourceRow, check_default_role

__all__ = [
    "COLUMN_ALIASES",
    "DELIMITERS",
    "FORMATS",
    "MAX_ROW_BYTES",
    "Source",
    "SourceError",
    "SourceInput",
    "SourceRow",
    "count_rows",
    "open_source",
]

#: The formats :func:`open_source` reads, with the file extensions that select them.
FORMATS: Final[Mapping[str, tuple[str, ...]]] = {
    "csv": (".csv", ".tsv", ".txt"),
    "jsonl": (".jsonl", ".ndjson"),
    "json": (".json",),
}

#: What :func:`open_source` reads: a path, ``"-"``, bytes, or a binary file object.
SourceInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

_DELIMITER_NAMES: Final = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def _resolve_format(fmt: str | None, path: str | None) -> str | None:
    """The format asked for, or the one the extension names; ``None`` means sniff."""
    if fmt is not None:
        wanted = fmt.strip().lower()
        if wanted == "ndjson":
            wanted = "jsonl"
        if wanted not in FORMATS:
            raise SourceError(f"unknown format {fmt!r}; use csv, jsonl or json")
        return wanted
    if path is None:
        return None
    ext = os.path.splitext(path)[1].lower()
    for name, extensions in FORMATS.items():
        if ext in extensions:
            return name
    raise SourceError(
        f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
        "name the file .csv, .jsonl or .json, or give the format (csv, jsonl or json)"
    )


def _check_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    value = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(value) != 1 or value in '"\r\n' or value.isalnum():
        raise SourceError(
            f"the delimiter must be one character such as , ; | or tab, got {delimiter!r}"
        )
    return value


def _os_message(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


class Source:
    """The rows of a member file: an iterator and a context manager that owns the file.

    Iterating yields :class:`SourceRow` objects lazily and raises :class:`SourceError`
    (a per-file problem) or nothing else. The file is closed when the iteration ends, on
    :meth:`close` or on leaving the ``with`` block; standard input, bytes and file objects
    given by the caller are never closed.
    """

    def __init__(
        self,
        name: str,
        fmt: str,
        rows: Generator[SourceRow, None, None],
        owned: IO[bytes] | None,
        columns: tuple[str, ...] | None,
        delimiter: str | None = None,
        encoding: str = "utf-8",
    ) -> None:
        #: The file name as given, ``<stdin>``, ``<bytes>`` or the file object's name.
        self.name = name
        #: ``csv``, ``jsonl`` or ``json``.
        self.format = fmt
        #: The CSV header's column names as written (``None`` for JSON).
        self.columns = columns
        #: The CSV delimiter used (``None`` for JSON).
        self.delimiter = delimiter
        #: The codec the file is read with.
        self.encoding = encoding
        self._rows: Generator[SourceRow, None, None] | None = rows
        self._owned = owned

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
        except UnicodeError as exc:  # e.g. a UTF-16 file cut in the middle of a character
            self.close()
            raise SourceError(f"{self.name}: cannot decode as {self.encoding}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise SourceError(f"{self.name}: cannot read: {_os_message(exc)}") from exc

    def close(self) -> None:
        """Stop reading and close the file (only one this opened). Safe to call twice."""
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.close()
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()

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


def _input(
    source: SourceInput, stdin: IO[bytes] | None, name: str | None
) -> tuple[IO[bytes], IO[bytes] | None, str, str | None]:
    """The binary stream, the part this call owns, a display name, and a path if any."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)), None, name or "<bytes>", None
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if path == "-":
            raw: object = stdin if stdin is not None else sys.stdin.buffer
            if isinstance(raw, io.TextIOWrapper):  # a text stream given by mistake
                raw = raw.buffer
            return raw, None, name or "<stdin>", None  # type: ignore[return-value]
        try:
            owned = open(path, "rb")  # noqa: SIM115 - the Source owns and closes it
        except OSError as exc:
            raise SourceError(f"{path}: cannot open: {_os_message(exc)}") from exc
        return owned, owned, name or path, path
    stream: object = source
    if isinstance(stream, io.TextIOBase):
        stream = getattr(stream, "buffer", None)
        if stream is None:
            raise SourceError("give a binary file object (opened with 'rb'), not a text stream")
    if not callable(getattr(stream, "read", None)):
        raise SourceError(
            f"cannot read members from {type(stream).__name__}: give a path, '-', bytes or "
            "a binary file object"
        )
    shown = getattr(stream, "name", None)
    shown_name = name or (str(shown) if isinstance(shown, str) else "<stream>")
    return stream, None, shown_name, None  # type: ignore[return-value]


def open_source(
    source: SourceInput,
    *,
    format: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    email_column: str | None = None,
    user_id_column: str | None = None,
    role_column: str | None = None,
    default_role: str | None = None,
    stdin: IO[bytes] | None = None,
    name: str | None = None,
) -> Source:
    """Open a member file and return its rows, lazily.

    ``source`` is a path, ``"-"`` (standard input, or ``stdin=``), ``bytes`` or a binary
    file object (read, never closed). ``format`` is ``csv``, ``jsonl`` (or ``ndjson``) or
    ``json``; without it a path's extension decides (``.csv``/``.tsv``/``.txt``,
    ``.jsonl``/``.ndjson``, ``.json``) and other input is sniffed. ``encoding`` is a
    Python codec name (a BOM overrides it); ``delimiter`` a CSV delimiter (``tab`` is
    accepted) instead of sniffing it; ``email_column``, ``user_id_column`` and
    ``role_column`` name the column (or JSON key) of each member field instead of the
    alias table; ``default_role`` is the role of rows without one. ``name`` is how errors
    name the input. A CSV header or the opening ``[`` of a JSON array is checked here, so
    input that cannot be read at all raises :class:`SourceError` now.
    """
    default = check_default_role(default_role)
    sep = _check_delimiter(delimiter)
    overrides = {"email": email_column, "userId": user_id_column, "role": role_column}
    path = os.fspath(source) if isinstance(source, str | os.PathLike) else None
    fmt = _resolve_format(format, None if path == "-" else path)
    raw, owned, shown, path = _input(source, stdin, name)
    try:
        head = peek_start(raw)
        codec = choose_encoding(head, encoding, shown)
        stream = io.BufferedReader(Prefixed(head, raw), buffer_size=CHUNK)
        if fmt is None:
            fmt = _sniff(head, codec)
        columns: tuple[str, ...] | None = None
        rows: Generator[SourceRow, None, None]
        if fmt == "csv":
            header = csv_header(
                open_text(stream, codec),
                shown,
                delimiter=sep,
                overrides=overrides,
                default_role=default,
            )
            columns, sep = header.columns, header.delimiter
            rows = csv_rows(header, shown)
        else:
            binary: IO[bytes] = stream
            if codec == "utf-8-sig":
                binary.read(3)
            elif codec != "utf-8":
                binary = io.BufferedReader(Utf8Stream(stream, codec), buffer_size=CHUNK)
            if fmt == "jsonl":
                rows = jsonl_rows(binary, shown, overrides=overrides, default_role=default)
            else:
                _check_array_start(head, codec, shown)
                rows = json_rows(binary, shown, overrides=overrides, default_role=default)
    except OSError as exc:
        if owned is not None:
            owned.close()
        raise SourceError(f"{shown}: cannot read: {_os_message(exc)}") from exc
    except UnicodeError as exc:
        if owned is not None:
            owned.close()
        raise SourceError(f"{shown}: cannot decode: {exc}") from exc
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    return Source(shown, fmt, rows, owned, columns, sep if fmt == "csv" else None, codec)


def _head_text(head: bytes, codec: str) -> str:
    # The head may end inside a character: decode what decodes.
    return head.decode(codec, "ignore") if codec != "utf-8" else head.decode("utf-8", "ignore")


def _sniff(head: bytes, codec: str) -> str:
    stripped = _head_text(head, codec).lstrip().lstrip("\ufeff").lstrip()
    if stripped[:1] == "[":
        return "json"
    if stripped[:1] == "{":
        return "jsonl"
    return "csv"


def _check_array_start(head: bytes, codec: str, name: str) -> None:
    text = _head_text(head, codec).lstrip("\ufeff")
    stripped = text.lstrip(" \t\r\n")
    line = text[: len(text) - len(stripped)].count("\n") + 1
    first = stripped[:1]
    if first == "[":
        return
    what = "the file is empty" if not first else f"it starts with {first!r}"
    hint = "; for one object per line use --format jsonl" if first == "{" else ""
    raise SourceError(
        f"{name}: line {line}: expected a JSON array of members ([...]), but {what}{hint}",
        line=line,
    )


def count_rows(source: SourceInput, *, format: str | None = None) -> int | None:
    """A fast estimate of the number of rows, for a progress bar; ``None`` if unknown.

    Counts line breaks (about 1 GB/s) in a regular CSV or JSON Lines file: blank lines
    and line breaks inside quoted CSV fields are counted too, so this is an upper bound.
    ``None`` for standard input, bytes, file objects, pipes and other non-regular files,
    JSON arrays, files that cannot be read and unknown formats; this never raises.
    """
    if not isinstance(source, str | os.PathLike) or os.fspath(source) == "-":
        return None
    try:
        fmt = _resolve_format(format, os.fspath(source))
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
