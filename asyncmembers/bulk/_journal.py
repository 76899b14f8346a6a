"""The journal: an append-only JSON Lines record of each row's outcome, for one instance.

A re-run of an import with the same journal skips the rows already created or skipped, so
an import killed at any point (even ``kill -9``) and started again ends with every row
applied once. Lines are flushed as outcomes arrive; a torn last line (a kill in the middle
of a write) is ignored when the journal is read back.

A journal cannot lie about where it came from:

- Its first line is a header ``{"asyncmembers_journal": 2, "instanceId": ..., "mode":
  "import"}``. A file whose first line is not such a header (damaged, missing, another
  format version), or names another instance or mode, is refused with a
  :class:`ValidationError` naming the file and the problem; nothing in it is trusted. Only
  a file that is empty, or holds nothing but a torn header (a kill while writing the first
  line), is taken as new.
- A path that is one of the run's other files (the input, the error report: ``protect``)
  is refused before anything is read or written.
- The file is locked (``flock``) for the run: a second run on the same journal is refused
  while the first holds it.

Rows lines: ``{"row": 0, "key": "e:ann@example.com", "outcome": "created"}``; an
import's also name the row's ``role``. Only ``created``, ``updated``, ``skipped`` and
``removed`` (import, remove) mark a key done; ``failed``, ``duplicate`` and
``role_differs`` (skipped as a member with another role, without ``update_roles``) do not
(a sync journal is a record: its re-run plans afresh). An import's key is done for the
role it was journaled with: a re-run that asks another role for the member (the file
was edited), or one with ``update_roles`` after a ``role_differs``, sends the row again.
Done keys are kept as 8-byte digests (:class:`DigestSet`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from typing import IO, Any

from .._json import dumps, loads
from ..errors import LosantError, ValidationError
from ._digest import DigestSet

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    _fcntl = None  # type: ignore[assignment]
fcntl: Any = _fcntl

__all__ = ["Journal", "check_journal_path"]

_VERSION = 2
#: Header versions this release reads (1: asyncmembers 0.1, import only).
_READABLE = (1, 2)
_DONE = frozenset({"created", "updated", "skipped", "removed"})
#: An import row skipped because the member has another role (no ``update_roles``).
ROLE_DIFFERS = "role_differs"
#: An import row answered "already a member" while the run was stopping: its role was
#: not read, so a re-run sends it again.
UNCHECKED = "role_unchecked"


def _header(instance_id: str, mode: str) -> bytes:
    return (
        dumps({"asyncmembers_journal": _VERSION, "instanceId": instance_id, "mode": mode}) + b"\n"
    )


def _a(word: object) -> str:
    text = str(word)
    return ("an " if text[:1] in ("a", "e", "i", "o", "u") else "a ") + text


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_journal_path(
    path: str | os.PathLike[str], protect: Iterable[str | os.PathLike[str] | None] = ()
) -> str:
    """Refuse a journal path that is one of ``protect`` (the input, the error report).

    Raises :class:`ValidationError` (``field="journal"``) naming both paths. The CLI calls
    it before opening anything; ``bulk_import``/``sync_members`` call it with their
    ``protect`` keyword. Returns the path as a string.
    """
    text = os.fspath(path)
    for other in protect:
        if other is None:
            continue
        other_text = os.fspath(other)
        if _same_file(text, other_text):
            raise ValidationError(
                f"journal {text} is the same file as {other_text}; the journal must be a "
                "file of its own (e.g. add .journal to the name)",
                field="journal",
            )
    return text


class Journal:
    """Locks ``path``, checks its header, reads the keys done, then appends outcomes.

    Blocking file work (reading a large journal): construct it off the event loop, e.g.
    with ``asyncio.to_thread``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        instance_id: str,
        *,
        mode: str = "import",
        protect: Iterable[str | os.PathLike[str] | None] = (),
    ) -> None:
        self.path = check_journal_path(path, protect)
        self.instance_id = instance_id.lower()
        self.mode = mode
        self.done = DigestSet()
        self._file: IO[bytes] | None = None
        # Checked before opening too: opening a FIFO would wait for a writer, and a device
        # (/dev/null) opens fine but can neither keep nor give back what is written.
        self._check_regular(_stat(self.path))
        try:
            self._file = open(self.path, "a+b")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ValidationError(
                f"cannot open journal {self.path}: {exc.strerror or exc}", field="journal"
            ) from exc
        try:
            self._check_regular(os.fstat(self._file.fileno()).st_mode)
            self._lock()
            self._load()
        except BaseException:
            self.close()
            raise

    def _check_regular(self, mode: int | None) -> None:
        if mode is not None and not stat.S_ISREG(mode):
            raise ValidationError(
                f"journal {self.path} is not a regular file ({_kind(mode)}); a journal must be "
                "a file this run can write and a re-run can read back (e.g. run.journal)",
                field="journal",
            )

    def _lock(self) -> None:
        assert self._file is not None
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValidationError(
                f"journal {self.path} is in use by another run (it is locked); wait for that "
                "run to finish, or give this one another journal",
                field="journal",
            ) from None
        except OSError:  # pragma: no cover - a file system without locks: run unlocked
            pass

    def _refuse(self, problem: str) -> ValidationError:
        return ValidationError(
            f"journal {self.path}: {problem}; it was not used (nothing in it is trusted). "
            "Give this run a new journal path",
            field="journal",
        )

    def _load(self) -> None:
        f = self._file
        assert f is not None
        f.seek(0)
        first = f.readline()
        header = _header(self.instance_id, self.mode)
        if not first or (not first.endswith(b"\n") and header.startswith(first) and not f.read(1)):
            # New, or only a torn header (killed while writing it): start it afresh.
            f.truncate(0)
            self._append(header)
            return
        try:
            entry: Any = loads(first)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or "asyncmembers_journal" not in entry or len(entry) > 3:
            raise self._refuse(
                "its first line is not an asyncmembers journal header (a damaged journal, or "
                "not a journal at all, e.g. the input file)"
            )
        version = entry.get("asyncmembers_journal")
        if version not in _READABLE:
            raise self._refuse(f"unknown journal format version {version!r}")
        other = entry.get("instanceId")
        if not isinstance(other, str) or other.lower() != self.instance_id:
            raise self._refuse(f"it belongs to instance {other}, not {self.instance_id}")
        # Version 1 (asyncmembers 0.1) journals were import journals without a mode.
        mode = entry.get("mode", "import") if version == 1 else entry.get("mode")
        if mode != self.mode:
            raise self._refuse(f"it records {_a(mode)} run, not {_a(self.mode)} run")
        done = self.done
        for number, line in enumerate(f, start=2):
            try:
                row: Any = loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict):
                key = row.get("key")
                if isinstance(key, str) and row.get("outcome") in _DONE:
                    role = row.get("role")
                    done.add(f"{key}#{role}" if isinstance(role, str) else key)
            elif not _torn(line):
                # Only a write cut by a kill may be unreadable; anything else means the
                # file was damaged, and what it says is done cannot be trusted.
                raise self._refuse(
                    f"line {number} is not a journal line ({line[:40]!r}): the journal is damaged"
                )
        f.seek(0, os.SEEK_END)
        if not line_ended(f):
            # A torn last line has no newline: start ours on a fresh line.
            self._append(b"\n")

    def _append(self, data: bytes) -> None:
        assert self._file is not None
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            # e.g. the disk is full: the journal can no longer vouch for what was done, so
            # the run stops (as a LosantError, with its partial result) rather than go on.
            # Closed now, the bytes that did not fit dropped: close() must not raise the
            # same error again flushing them (and later outcomes are not written).
            broken, self._file = self._file, None
            with contextlib.suppress(OSError):
                broken.close()
            raise LosantError(
                f"cannot write journal {self.path}: {exc.strerror or exc}; free space or "
                "choose another --journal, then run the same command again to resume"
            ) from exc

    def has(self, key: str, role: str) -> bool:
        """Whether an earlier run finished ``key`` with ``role`` (or, journaled without a
        role by asyncmembers 0.2.0's first releases, with any role)."""
        done = self.done
        return f"{key}#{role}" in done or key in done

    def record(
        self, row: int, keys: tuple[str, ...], outcome: str, role: str | None = None
    ) -> None:
        """Append one row's outcome (a line per key) and flush it to the OS."""
        if self._file is None:
            return
        if not keys:
            self._append(dumps({"row": row, "outcome": outcome}) + b"\n")
            return
        extra = {} if role is None else {"role": role}
        self._append(
            b"".join(
                dumps({"row": row, "key": key, "outcome": outcome, **extra}) + b"\n" for key in keys
            )
        )

    def close(self) -> None:
        """Close the file, which releases the lock."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _torn(line: bytes) -> bool:
    """True for a line a kill may have cut: the last, unterminated, line; or a cut row line
    a later run ended with a newline when it resumed (it starts as every row line does).
    A blank line is harmless."""
    body = line.rstrip(b"\r\n")
    return (
        not line.endswith(b"\n")
        or body.startswith(_ROW_START)
        or _ROW_START.startswith(body)  # cut within the first bytes ("{", '{"ro')
        or not body.strip()
    )


#: How every row line starts (``dumps`` writes no space after the brace).
_ROW_START = b'{"row"'


def _stat(path: str) -> int | None:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None  # absent (a new journal) or unreadable: open() says which


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def line_ended(f: IO[bytes]) -> bool:
    """True when the file (positioned at its end) is empty or ends with a newline."""
    end = f.tell()
    if end == 0:
        return True
    f.seek(end - 1)
    last = f.read(1)
    f.seek(0, os.SEEK_END)
    return last == b"\n"
