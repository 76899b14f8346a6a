"""``asyncmembers demo`` and its bundled sample list."""

from __future__ import annotations

import csv
import importlib.resources
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from asyncmembers.cli import cli
from tests import make_sample_members


def test_the_bundled_sample_is_what_the_generator_makes() -> None:
    ref = importlib.resources.files("asyncmembers").joinpath("data", "sample_members.csv")
    text = ref.read_text(encoding="utf-8")
    assert text == make_sample_members.generate()
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == make_sample_members.ROWS
    assert list(rows[0]) == list(make_sample_members.COLUMNS)


def test_demo_exits_0_with_a_summary_and_the_expected_error_report(tmp_path: Path) -> None:
    report = tmp_path / "demo-errors.csv"
    result = CliRunner(env={"LOSANT_API_TOKEN": None}).invoke(
        cli, ["demo", "--errors", str(report), "--no-progress"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("Import summary", "Created", "already a member", "duplicate in input"):
        assert heading in out
    assert "Members, sorted by role" in out
    assert "✓ The server holds" in out
    assert str(report) in out
    assert "asyncmembers import members.csv --instance <instance-id>" in out

    with report.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == make_sample_members.INVALID_ROWS
    assert {r["error_type"] for r in rows} == {"ValidationError"}
    assert {r["team"] for r in rows} <= set(make_sample_members.TEAMS)  # extra columns kept
    assert sorted((r["email"], r["userId"], r["role"]) for r in rows) == sorted(
        make_sample_members.INVALID
    )


def test_demo_writes_its_report_to_a_new_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli, ["demo", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [report] = tmp_path.glob("asyncmembers-demo-*/errors.csv")
    assert f"Error report: {report}" in " ".join(result.stdout.split())


@pytest.mark.subprocess
def test_python_m_asyncmembers_demo(tmp_path: Path) -> None:
    report = tmp_path / "errors.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "asyncmembers", "demo", "--errors", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Import summary" in proc.stdout
    assert "Traceback" not in proc.stderr
    # stderr is not a terminal here: progress comes as plain lines, if the run is long enough.
    assert all(line.startswith("import: ") for line in proc.stderr.splitlines() if line), (
        proc.stderr
    )


def test_demo_sync_leaves_the_server_exactly_equal_to_the_changed_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncmembers.cli._commands import demo as demo_module
    from asyncmembers.testing import FakeLosantServer

    servers: list[FakeLosantServer] = []

    class Recorded(FakeLosantServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(demo_module, "FakeLosantServer", Recorded)
    report = tmp_path / "errors.csv"
    result = CliRunner(env={"LOSANT_API_TOKEN": None}).invoke(
        cli, ["demo", "--sync", "--errors", str(report), "--no-progress"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    # The plan is printed before the sync's summary; both name every kind of change.
    assert out.index("Import summary") < out.index("Sync plan") < out.index("Sync summary")
    for line in ("To add", "To change role", "To remove", "Removed", "Role changed"):
        assert line in out
    assert "✓ After the sync the server holds exactly the changed list" in out

    changed = tmp_path / "changed_members.csv"
    with changed.open(encoding="utf-8", newline="") as f:
        wanted = {(r["email"].lower() or r["userId"]): r["role"] for r in csv.DictReader(f)}
    [server] = servers
    truth = server.members(demo_module.DEMO_INSTANCE)
    held = {(m.get("email") or "").lower() or m["userId"]: m["role"] for m in truth}
    assert held == wanted and len(truth) == len(wanted)
    # The changed list really is a change of every kind.
    assert sum(k.startswith("new.hire") for k in wanted) == demo_module.SYNC_NEW
    assert server.stats.deletes_applied > 0 and server.stats.patches_applied > 0
