"""The import journal: an append-only JSON Lines record of each row's outcome.

A re-run with the same journal skips the rows already created or skipped, so an import
killed at any point (even ``kill -9``) and started again ends with every row applied once.
Lines are flushed as outcomes arrive; a torn last line (a kill in the middle of a write)
is ignored when the journal is read back.

Format: a header line ``{"asyncmembers_journal": 1, "instanceId": ...}``, then one line per
row ``{"row": 0, "key": "e:ann@example.com", "outcome": "created"}``. Only ``created`` and
``skipped`` mark a key done; ``failed`` and ``duplicate`` (a repeat of an earlier row, whose
own outcome decides) do not. Rows are known by
their member identity (``e:`` + lower-cased email, ``u:`` + userId), not by position, so a
corrected or re-ordered input still resumes correctly.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

from ..errors import LosantError, ValidationError

__all__ = ["Journal"]

_VERSION = 1


class Journal:
    """Reads the keys already done from ``path`` (if it exists), then appends outcomes."""

    def __init__(self, path: str | os.PathLike[str], instance_id: str) -> None:
        self.path = os.fspath(path)
        self.done: set[str] = set()
        self._file: IO[str] | None = None
        needs_header = True
        try:
            with open(self.path, encoding="utf-8", errors="replace") as existing:
                needs_header = self._load(existing, instance_id)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ValidationError(
                f"cannot read journal {self.path}: {exc.strerror}", field="journal"
            ) from exc
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ValidationError(
                f"cannot write journal {self.path}: {exc.strerror}", field="journal"
            ) from exc
        if self._file.tell() > 0:
            # A torn last line has no newline; start ours on a fresh line (the header too:
            # glued to a torn one it would be lost, and with it the instance check).
            with open(self.path, "rb") as raw:
                raw.seek(-1, os.SEEK_END)
                if raw.read(1) != b"\n":
                    self._file.write("\n")
        if needs_header:
            self._write({"asyncmembers_journal": _VERSION, "instanceId": instance_id})

    def _load(self, lines: IO[str], instance_id: str) -> bool:
        """Collect done keys; return True when the file has no header yet."""
        header_seen = False
        for number, line in enumerate(lines, 1):
            try:
                entry: Any = json.loads(line)
            except ValueError:
                continue  # torn or foreign line: ignored, never fatal
            if not isinstance(entry, dict):
                continue
            if "asyncmembers_journal" in entry:
                header_seen = True
                if entry.get("instanceId") != instance_id:
                    raise ValidationError(
                        f"journal {self.path} (line {number}) belongs to instance "
                        f"{entry.get('instanceId')}, not {instance_id}; use another journal file",
                        field="journal",
                    )
                continue
            key, outcome = entry.get("key"), entry.get("outcome")
            if isinstance(key, str) and outcome in ("created", "skipped"):
                self.done.add(key)
        return not header_seen

    def _write(self, entry: dict[str, Any]) -> None:
        assert self._file is not None
        try:
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            # e.g. the disk is full: the journal can no longer vouch for what was done, so
            # the import stops (as a LosantError, with its partial result) rather than go on.
            raise LosantError(
                f"cannot write journal {self.path}: {exc.strerror or exc}; free space or "
                "choose another --journal, then run the same import again to resume"
            ) from exc

    def record(self, row: int, keys: tuple[str, ...], outcome: str) -> None:
        """Append one row's outcome and flush it to the OS."""
        if self._file is None:
            return
        entry: dict[str, Any] = {"row": row, "outcome": outcome}
        if keys:
            entry["key"] = keys[0]
        self._write(entry)
        for extra in keys[1:]:  # a row with both email and userId: both are done
            self._write({"row": row, "key": extra, "outcome": outcome})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
