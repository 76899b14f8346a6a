"""The run's files (input, --errors, --journal, --summary-json) must be distinct files."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncmembers.testing import FakeLosantServer
from tests.test_cli import (  # the same runner and fixtures as the other CLI tests
    IID,
    emails,
    losant_server_instances,
    losant_server_tokens,
    one_error_line,
    run,
    write,
)

__all__ = ["losant_server_instances", "losant_server_tokens"]


@pytest.mark.parametrize("command", ["import", "sync", "remove"])
@pytest.mark.parametrize(
    ("first", "second"),
    [("FILE", "--errors"), ("FILE", "--summary-json"), ("--errors", "--summary-json")],
)
async def test_two_of_the_runs_files_on_one_path_are_refused_before_anything_is_written(
    losant_server: FakeLosantServer, tmp_path: Path, command: str, first: str, second: str
) -> None:
    src = write(tmp_path / "in.csv", "email,role\nann@example.com,view\n")
    before = src.read_bytes()
    link = tmp_path / "link.out"
    link.symlink_to(src if first == "FILE" else tmp_path / "out.txt")
    shared = {"FILE": str(src), "--errors": str(tmp_path / "out.txt")}[first]
    args = [command, str(src), "--instance", IID, "--no-progress"]
    if first != "FILE":
        args += [first, shared]
    args += [second, str(link)]  # the same file through a symlink
    result = await run(losant_server, *args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert f"'{second}'" in line and "the same file as" in line
    assert src.read_bytes() == before
    assert not (tmp_path / "out.txt").exists()
    assert emails(losant_server) == []
