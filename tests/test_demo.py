"""``asyncmembers demo`` and its bundled sample list."""

from __future__ import annotations

import csv
import importlib.resources
import subprocess
import sys
import tempfile
from pathlib import Path

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
