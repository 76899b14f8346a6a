"""Issue 13's table, row by row: what the command line did before, and what it does now.

(The export rows are in ``test_sources_exports.py``, SIGTERM through a real process in
``test_cli_subprocess.py``, the web apps in ``test_examples.py``.)
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asyncmembers.cli import _output, cli
from asyncmembers.cli._common import EXIT_STATUSES, CliError, exit_code_for
from asyncmembers.errors import (
    BadRequestError,
    NotFoundError,
    ServerError,
    TransportError,
    UnauthorizedError,
    ValidationError,
)
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "issue13-s3cret-token-x9"
CLEAN_ENV: dict[str, str | None] = {
    "LOSANT_API_TOKEN": None,
    "LOSANT_API_URL": None,
    "LOSANT_INSTANCE_ID": None,
}


@pytest.fixture
def losant_server_tokens() -> Mapping[str, list[str]]:
    return {TOKEN: ["all.Instance"]}


@pytest.fixture
def losant_server_instances() -> list[str]:
    return [IID]


async def run(server: FakeLosantServer | None, *args: str) -> Result:
    runner = CliRunner(env=CLEAN_ENV)
    argv = ["--url", server.url, "--token", TOKEN] if server is not None else []
    return await asyncio.to_thread(runner.invoke, cli, [*argv, *args], catch_exceptions=False)


def members_file(tmp_path: Path, good: int, bad: int = 0) -> Path:
    path = tmp_path / "members.csv"
    lines = ["email,role"]
    lines += [f"user{i}@example.com,view" for i in range(good)]
    lines += [f"broken{i}@,view" for i in range(bad)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_summary_json_for_a_batch_job(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    # Before: only a human table wrapped at 80 columns.
    losant_server.add_member(IID, email="user0@example.com", role="view")
    summary = tmp_path / "out" / "summary.json"
    summary.parent.mkdir()
    path = members_file(tmp_path, good=5, bad=2)
    result = await run(
        losant_server, "import", str(path), "--instance", IID, "--summary-json", str(summary)
    )
    assert result.exit_code == 1, result.output
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["exit_status"] == 1 and data["status"] == "complete" and data["error"] is None
    assert (data["total"], data["created"], data["skipped"], data["failed"]) == (7, 4, 1, 2)
    assert data["failures_by_type"] == {"ValidationError": 2}
    assert data["skipped_by_reason"] == {"already a member": 1}
    assert data["requests"] >= 4 and data["retries"] == 0 and data["elapsed"] > 0
    assert TOKEN not in summary.read_text(encoding="utf-8")


async def test_verbose_after_the_command_logs_retries(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    # Before: 'import ... -v' was "No such option '-v'" although README says global
    # options may follow the command.
    losant_server.faults = Faults(error_rate=0.5)
    path = members_file(tmp_path, good=20)
    result = await run(losant_server, "import", str(path), "--instance", IID, "-v")
    assert result.exit_code in (0, 1), result.output
    assert re.search(r"^INFO asyncmembers.*retry", result.stderr, re.M | re.I), result.stderr
    assert TOKEN not in result.stderr
    quiet = await run(losant_server, "import", str(path), "--instance", IID, "--no-progress")
    assert "INFO" not in quiet.stderr


async def test_vv_logs_one_line_per_request(losant_server: FakeLosantServer) -> None:
    # Before: -vv on a successful list wrote nothing.
    result = await run(losant_server, "list", "--instance", IID, "-vv")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if f"/instances/{IID}/members" in line]
    assert len(lines) == 1, result.stderr
    assert re.search(r"GET /instances/\w+/members\S* 200 \d+ ms", lines[0]), lines[0]
    assert TOKEN not in result.stderr


async def test_many_failures_without_errors_say_how_to_get_them_all(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    # Before: "and 490 more", with no hint.
    path = members_file(tmp_path, good=1, bad=25)
    result = await run(losant_server, "import", str(path), "--instance", IID)
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "and 15 more: pass --errors PATH to write every failed row to a CSV" in text
    report = tmp_path / "errors.csv"
    with_report = await run(
        losant_server, "import", str(path), "--instance", IID, "--errors", str(report)
    )
    assert f"and 15 more: every failed row is in {report}" in " ".join(with_report.stdout.split())


async def test_progress_has_an_eta_and_thousands_separators(
    losant_server: FakeLosantServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: "import: 40/40 rows ..." with no ETA and no separators.
    monkeypatch.setattr(_output._PlainProgress, "interval", 0.001)
    losant_server.faults = Faults(latency=0.002)
    path = members_file(tmp_path, good=1200)
    result = await run(losant_server, "import", str(path), "--instance", IID, "--concurrency", "4")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("import: ")]
    assert progress, result.stderr
    assert all("/1,200 rows" in line for line in progress)
    assert any(re.search(r", ETA \d+ (s|min)", line) for line in progress), progress


def test_durations_read_like_a_person_says_them() -> None:
    assert [_output.duration(s) for s in (None, 0.4, 59, 61, 3599, 7260)] == [
        "?",
        "0 s",
        "59 s",
        "1 min 01 s",
        "59 min 59 s",
        "2 h 01 min",
    ]


def test_one_exception_type_carries_each_exit_status() -> None:
    assert [CliError("x", code).exit_code for code in EXIT_STATUSES] == list(EXIT_STATUSES)
    assert CliError("x").exit_code == 2


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ValidationError("bad"), 2),
        (UnauthorizedError("no", status=401), 3),
        (NotFoundError("no instance", status=404), 3),
        (TransportError("connection refused"), 4),
        (ServerError("503", status=503), 1),
        (BadRequestError("400", status=400), 1),
    ],
)
def test_exit_status_for_each_error(error: Exception, status: int) -> None:
    assert exit_code_for(error) == status  # type: ignore[arg-type]


def test_endless_input_without_a_line_break_ends_with_an_input_error() -> None:
    # Issue 11 item 4: 'import /dev/zero --format csv' hung at 100 % CPU.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asyncmembers",
            "--token",
            TOKEN,
            "--url",
            "http://127.0.0.1:9",
            "import",
            "/dev/zero",
            "--format",
            "csv",
            "--instance",
            IID,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "line 1: the header row is longer than the limit of 1,048,576 characters" in proc.stderr
