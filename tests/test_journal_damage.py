"""Journals that are not regular files, or damaged in the middle, are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import asyncmembers as am
from asyncmembers.bulk._journal import Journal

IID = "575ec8687ae143cd83dc4a97"


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
def test_a_journal_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    if kind == "device":
        path = Path("/dev/null")
    elif kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = tmp_path
    with pytest.raises(am.ValidationError, match="is not a regular file") as info:
        Journal(path, IID)
    assert info.value.field == "journal"


def journal_with_rows(path: Path, n: int) -> list[bytes]:
    j = Journal(path, IID)
    for i in range(n):
        j.record(i, (f"e:r{i}@example.com",), "created")
    j.close()
    return path.read_bytes().splitlines(keepends=True)


def test_a_damaged_middle_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    lines = journal_with_rows(path, 6)
    lines[3] = b"GARBAGE{{{ not a journal line\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(am.ValidationError, match=r"line 4 is not a journal line"):
        Journal(path, IID)
    lines[3] = b"[1, 2, 3]\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(am.ValidationError, match=r"line 4 is not a journal line"):
        Journal(path, IID)


def test_a_torn_row_stays_readable_after_the_runs_that_resumed_it(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    journal_with_rows(path, 3)
    path.write_bytes(path.read_bytes()[:-9])  # the last row torn by a kill
    j = Journal(path, IID)  # the resume ends the torn line and appends after it
    j.record(3, ("e:r3@example.com",), "created")
    j.close()
    j = Journal(path, IID)  # and a second resume still reads it
    assert "e:r0@example.com" in j.done and "e:r3@example.com" in j.done
    assert "e:r2@example.com" not in j.done
    j.close()
