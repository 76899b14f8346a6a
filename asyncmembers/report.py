"""Write the rows that failed as a CSV error report the user can fix and import again.

:class:`ErrorReportWriter` writes one CSV row per failure, flushed at once (an import that
is killed still leaves every failure written so far)::

    with ErrorReportWriter("errors.csv") as report:
        for failure in result.failures:
            report.write(failure.member, failure.error)

Columns
-------
First the member file's own columns, then ``line`` (``element N`` for a JSON array),
``error_type`` (the error's class name, e.g. ``ValidationError``, ``BadRequestError``), ``status`` (HTTP status, empty when
there is none), ``message``, and last ``extra``. The header is fixed when the first row is
written (or from ``columns=``), because rows are flushed as they come:

- a CSV source: its header, as written in the file (so the report's header reads back
  the same way);
- a JSON source: ``email``, ``userId``, ``role``, then the other keys of the first
  failed row in their order;
- Python input (mappings, :class:`~asyncmembers.models.InstanceMemberPost`): ``email``,
  ``userId``, ``role``, then the other keys of the first failed mapping.

Anything a later row has that the header lacks (a JSON key first seen later, CSV cells
beyond the header) goes into ``extra`` as a JSON object, so nothing is lost; a missing
cell is written empty. So every report row has the header's shape, and a row that failed
only for its shape ("row has 5 cells but the header has 4 columns") is judged on its
member cells alone when the report is imported again. ``line`` is empty for Python input. A source column named like one of the report's own columns
keeps its place and the report's column gets a leading ``_`` (``_status``); but a source
that has all of ``line``, ``error_type``, ``status`` and ``message`` is taken to be an
earlier report being re-imported: those columns are replaced, and its ``extra`` is merged
into the new one, so a report of a report has the same shape as the first.

Cells are strings: ``None`` is empty, other non-strings (JSON numbers, ``true``, lists)
are written as JSON.

Formula guard
-------------
A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some strip
a leading tab or CR first) as a formula, so a hostile row such as ``=HYPERLINK(...)``
would run when the user opens the report. Such a cell is written with a leading ``'``,
which spreadsheets show as text. Plain numbers (``-12``, ``+1.5``) are left alone: a
spreadsheet reads them as the same number. The CSV reader of :mod:`asyncmembers.sources`
removes that ``'`` again from ``email``, ``userId`` and ``role`` cells, so a report
re-imports exactly as it was read; other columns keep it (they are not sent anywhere).

The report is UTF-8 without a byte order mark; bytes the reader could not decode are
written as ``\\xNN`` and other characters that cannot be encoded (lone surrogates from
``\\ud800`` escapes in JSON) as backslash escapes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Final

from .errors import LosantError
from .models import InstanceMemberPost
from .sources import SourceRow
from .sources._row import escape_bytes

__all__ = ["EXTRA_COLUMN", "REPORT_COLUMNS", "ErrorReportWriter", "guard_cell"]

#: The report's own columns, after the member file's columns.
REPORT_COLUMNS: Final = ("line", "error_type", "status", "message")
#: The trailing column holding, as a JSON object, values the header has no column for.
EXTRA_COLUMN: Final = "extra"

_MEMBER_COLUMNS: Final = ("email", "userId", "role")
_CANONICAL: Final[Mapping[str, str]] = {
    "email": "email",
    "userid": "userId",
    "user_id": "userId",
    "role": "role",
}
_FORMULA_START: Final = frozenset("=+-@\t\r")
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def guard_cell(text: str) -> str:
    """Return ``text`` safe to open in a spreadsheet: ``'`` before a formula start."""
    if text and text[0] in _FORMULA_START and _NUMBER.fullmatch(text) is None:
        return "'" + text
    return text


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Bytes the reader could not decode are written as \xNN, so the report never turns
        # them into a valid-looking address; other lone surrogates as \udXXX.
        text = escape_bytes(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _view(row: object) -> tuple[Mapping[str, Any], Mapping[str, str], int | str | None]:
    """The row's values, which key holds each member field, and where it is."""
    if isinstance(row, SourceRow):
        return row.fields, row.keys, row.line if row.line is not None else row.where
    if isinstance(row, InstanceMemberPost):
        wire = row.to_wire()
        return wire, {name: name for name in wire}, None
    if isinstance(row, Mapping):
        fields = {str(key): value for key, value in row.items()}
        keys: dict[str, str] = {}
        for key in fields:
            member = _CANONICAL.get(key.strip().casefold())
            if member is not None:
                keys.setdefault(member, key)
        return fields, keys, None
    return {"row": repr(row)}, {}, None


class ErrorReportWriter:
    """Write failed rows as CSV: original columns, then line, error_type, status, message.

    ``target`` is a path (the file is created, truncated and owned: closed by
    :meth:`close` or the ``with`` block) or a text stream (left open; open it with
    ``newline=""``). ``columns`` fixes the member file's columns instead of taking them
    from the first row written (e.g. ``Source.columns``). Each :meth:`write` is flushed.
    A path that cannot be created raises :class:`OSError` here.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        columns: Sequence[str] | None = None,
    ) -> None:
        self._owned: IO[str] | None = None
        self._stream: IO[str]
        if isinstance(target, str | os.PathLike):
            self._owned = self._stream = open(  # noqa: SIM115 - closed by close()
                target, "w", encoding="utf-8", newline=""
            )
        else:
            self._stream = target
        self._csv = csv.writer(self._stream)
        self._base: tuple[str, ...] | None = None
        self._names: dict[str, str] = {}
        self._skip: frozenset[str] = frozenset()
        self._old_extra: str | None = None
        self._count = 0
        self._closed = False
        if columns is not None:
            self._set_header(tuple(columns))

    @property
    def count(self) -> int:
        """How many failed rows have been written."""
        return self._count

    @property
    def header(self) -> tuple[str, ...] | None:
        """The report's header row, once it is fixed."""
        if self._base is None:
            return None
        own = (*REPORT_COLUMNS, EXTRA_COLUMN)
        return self._base + tuple(self._names[name] for name in own)

    def _set_header(self, base: tuple[str, ...]) -> None:
        names = set(base)
        if set(REPORT_COLUMNS) <= names:  # an earlier report, imported again
            self._skip = frozenset((*REPORT_COLUMNS, EXTRA_COLUMN)) & names
            if EXTRA_COLUMN in names:
                self._old_extra = EXTRA_COLUMN
            base = tuple(column for column in base if column not in self._skip)
            names = set(base)
        for own in (*REPORT_COLUMNS, EXTRA_COLUMN):
            name = own
            while name in names:
                name = "_" + name
            names.add(name)
            self._names[own] = name
        self._base = base
        self._writerow(self.header or ())

    def _first_columns(self, row: object) -> tuple[str, ...]:
        if isinstance(row, SourceRow) and row.columns is not None:
            return row.columns
        if not isinstance(row, SourceRow | Mapping):
            return _MEMBER_COLUMNS
        fields, keys, _ = _view(row)
        used = set(keys.values())
        return (*_MEMBER_COLUMNS, *(key for key in fields if key not in used))

    def _writerow(self, cells: Sequence[Any]) -> None:
        try:
            self._csv.writerow([guard_cell(_text(cell)) for cell in cells])
            self._stream.flush()
        except OSError:
            # e.g. the disk is full. The report is finished as it stands: close() must
            # not raise the same error again flushing the bytes that did not fit.
            self._closed = True
            if self._owned is not None:
                with contextlib.suppress(OSError):
                    self._owned.close()
            raise

    def write(self, row: object, error: BaseException) -> None:
        """Write one failed row and its error, and flush.

        ``row`` is a :class:`~asyncmembers.sources.SourceRow`, a mapping or an
        :class:`~asyncmembers.models.InstanceMemberPost` (anything else is written in
        ``extra``); ``error`` is normally a :class:`~asyncmembers.errors.LosantError`.
        """
        if self._closed:
            raise ValueError("write() on a closed ErrorReportWriter")
        if self._base is None:
            self._set_header(self._first_columns(row))
        assert self._base is not None
        fields, keys, line = _view(row)
        used: set[str] = set()
        cells: list[Any] = []
        for column in self._base:
            key = column if column in fields else keys.get(column)
            if key is not None and key in fields:
                used.add(key)
                cells.append(fields[key])
            else:
                cells.append("")
        extra: dict[str, Any] = {}
        if self._old_extra is not None:
            old = fields.get(self._old_extra)
            try:
                parsed = json.loads(old) if isinstance(old, str) and old else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                extra.update(parsed)
            elif old:
                extra[self._old_extra] = old
        for key, value in fields.items():
            if key not in used and key not in self._skip:
                extra[key] = value
        if isinstance(error, LosantError):
            status, message = error.status, error.message
        else:
            status, message = None, str(error)
        cells += [
            "" if line is None else str(line),
            type(error).__name__,
            "" if status is None else str(status),
            message,
            json.dumps(extra, ensure_ascii=False, default=str) if extra else "",
        ]
        self._writerow(cells)
        self._count += 1

    def close(self) -> None:
        """Finish the report (a header alone if nothing failed); close an owned file."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._base is None:
                self._set_header(_MEMBER_COLUMNS)
        finally:
            if self._owned is not None:
                self._owned.close()

    def __enter__(self) -> ErrorReportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ErrorReportWriter rows={self._count}{' closed' if self._closed else ''}>"
