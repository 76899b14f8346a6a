"""The command line as users run it: real processes, real signals, real files.

``python -m asyncmembers fake-server`` runs in one process; ``python -m asyncmembers import``
and friends talk to it from others.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

TOKEN = "subprocess-s3cret-token"
IID = "575ec8687ae143cd83dc4a97"
UID = "5f0c1a2b3c4d5e6f7a8b9c0d"
#: A safety net so a broken build cannot hang the suite; no test depends on timing.
HANG_GUARD = 120.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    env["COLUMNS"] = "120"
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "asyncmembers", *args]


def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run one command against ``url`` to completion."""
    return subprocess.run(
        cli("--url", url, "--token", TOKEN, *args),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=HANG_GUARD,
        check=False,
    )


class Server:
    """A ``fake-server`` process and the URL it printed on its first line."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            cli("fake-server", "--port", "0", "--token", TOKEN, "--instance", IID, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        self._guard = threading.Timer(HANG_GUARD, self.proc.kill)
        self._guard.start()
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), self.url

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str, str]:
        """Send ``sig``; return the exit status and the rest of stdout and stderr."""
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=HANG_GUARD)
        self._guard.cancel()
        return self.proc.returncode, out, err

    def close(self) -> None:
        self._guard.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


MESSY = (
    "\ufeffemail,role,name,team,userId\r\n"  # BOM, CRLF, an extra column or two
    'ada@example.com,view,"Lovelace, Ada",Math,\r\n'  # 2: quoted comma
    "\r\n"  # 3: blank
    '"bob@example.com",ADMIN,"Bob ""The Builder""",Ops,\r\n'  # 4: already a member
    "carol@example,view,Carol,Ops,\r\n"  # 5: invalid email
    ",view,Nobody,Ops,\r\n"  # 6: neither email nor userId
    'dave@example.com,owner,"Dave, Jr.",Ops,\r\n'  # 7: unknown role
    ' ADA@EXAMPLE.COM ,view,"Ada, again",Math,\r\n'  # 8: duplicate of line 2
    ",admin,Eve,Sec,5f0c1a2b3c4d5e6f7a8b9c0d\r\n"  # 9: by userId
    'frank@example.com,view,"Frank\r\non two lines",Ops,\r\n'  # 10-11: quoted line break
    ",,,,\r\n"  # 12: an empty spreadsheet row
    "\r\n"  # 13: blank
    "grace@example.com,,Grace,Ops,\r\n"  # 14: role missing
    "henry@example.com,view,Henry,Ops,,surplus\r\n"  # 15: one cell too many
    "ivan@example.com,view,Ivan,Ops,\r\n"  # 16: fine
    'judy@example.com,view,"=HYPERLINK(""http://x"")",Ops,12345\r\n'  # 17: bad userId
)


def test_messy_csv_against_a_fake_server_process(server: Server, tmp_path: Path) -> None:
    added = run(
        "add", "--instance", IID, "--email", "bob@example.com", "--role", "view", url=server.url
    )
    assert added.returncode == 0, added.stderr

    members = tmp_path / "messy.csv"
    members.write_bytes(MESSY.encode("utf-8"))
    report = tmp_path / "errors.csv"
    result = run("import", str(members), "--instance", IID, "--errors", str(report), url=server.url)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr

    with report.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header == [
        "email", "role", "name", "team", "userId",
        "line", "error_type", "status", "message", "extra",
    ]  # fmt: skip
    assert [row[:8] for row in rows] == [
        ["carol@example", "view", "Carol", "Ops", "", "5", "ValidationError", ""],
        ["", "view", "Nobody", "Ops", "", "6", "ValidationError", ""],
        ["dave@example.com", "owner", "Dave, Jr.", "Ops", "", "7", "ValidationError", ""],
        ["grace@example.com", "", "Grace", "Ops", "", "14", "ValidationError", ""],
        ["henry@example.com", "view", "Henry", "Ops", "", "15", "ValidationError", ""],
        [
            "judy@example.com", "view", "'=HYPERLINK(\"http://x\")", "Ops", "12345",
            "17", "ValidationError", "",
        ],
    ]  # fmt: skip
    messages = [row[8] for row in rows]
    for message, needle in zip(
        messages,
        ["email", "email or a userId", "role", "role is missing", "6 cells", "userId"],
        strict=True,
    ):
        assert message.startswith("line ") and needle in message
    assert [row[9] for row in rows] == ["", "", "", "", '{"column 6": "surplus"}', ""]
    assert "6 failed rows written to" in result.stderr

    summary = result.stdout
    assert "Rows read" in summary and "already a member" in summary
    assert "duplicate in input" in summary

    listed = run("list", "--instance", IID, "--format", "json", url=server.url)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)["items"]
    assert sorted(m.get("email") or m["userId"] for m in items) == [
        UID,
        "ada@example.com",
        "bob@example.com",
        "frank@example.com",
        "ivan@example.com",
    ]
    for output in (added, result, listed):
        assert TOKEN not in output.stdout + output.stderr
    assert TOKEN not in report.read_text(encoding="utf-8")

    status, _, err = server.stop(signal.SIGTERM)
    assert status == 0, err
    assert "Stopped (SIGTERM)" in err
    assert "Traceback" not in err


def test_fake_server_prints_how_to_use_it_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    s = Server()
    try:
        assert s.proc.stdout is not None
        lines = [s.proc.stdout.readline() for _ in range(3)]
        assert lines[0] == f"instance: {IID}\n"
        assert (
            f'curl -H "Authorization: Bearer {TOKEN}" {s.url}/instances/{IID}/members' in lines[2]
        )
        status, _, err = s.stop(signal.SIGINT)
        assert status == 0, err
        assert "Stopped (SIGINT)" in err
    finally:
        s.close()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_import_stops_cleanly_and_the_journal_resumes(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    # Issue 13: SIGTERM (schedulers, systemd, Kubernetes, CI) exited 143 with stdout empty
    # and no summary. Now SIGTERM and Ctrl-C stop the same clean way.
    s = Server("--latency", "0.05")
    try:
        members = tmp_path / "members.csv"
        n = 300
        members.write_text(
            "email,role\n" + "".join(f"user{i}@example.com,view\n" for i in range(n)),
            encoding="utf-8",
        )
        journal = tmp_path / "import.journal"
        summary = tmp_path / "summary.json"
        args = ["import", str(members), "--instance", IID, "--journal", str(journal)]
        proc = subprocess.Popen(
            cli(
                "--url",
                s.url,
                "--token",
                TOKEN,
                *args,
                "--concurrency",
                "2",
                "--summary-json",
                str(summary),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        guard = threading.Timer(HANG_GUARD, proc.kill)
        guard.start()
        try:
            assert proc.stderr is not None
            # Progress lines (stderr is not a terminal) prove the import is under way.
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if line.startswith("import: "):
                    break
            assert seen and seen[-1].startswith("import: "), seen
            proc.send_signal(sig)
            out, err = proc.communicate()
        finally:
            guard.cancel()
        assert proc.returncode == status, err
        assert "Import summary (interrupted: partial)" in out
        assert "Run the same command again to finish" in out
        assert "Traceback" not in err
        figures = json.loads(summary.read_text())
        assert figures["exit_status"] == status and figures["status"] == "interrupted"
        assert 0 < figures["total"] < n
        assert figures["total"] == figures["created"] + figures["skipped"] + figures["failed"]

        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        assert entries[0]["instanceId"] == IID
        done = [e for e in entries[1:] if e["outcome"] == "created"]
        assert 0 < len(done) < n

        again = run(*args, "--no-progress", url=s.url)
        assert again.returncode == 0, again.stderr
        assert "done in an earlier run" in again.stdout

        listed = run("list", "--instance", IID, "--format", "csv", url=s.url)
        rows = list(csv.DictReader(listed.stdout.splitlines()))
        assert sorted(r["email"] for r in rows) == sorted(f"user{i}@example.com" for i in range(n))
    finally:
        s.close()


def test_sync_prune_under_faults_stopped_by_sigterm_then_rerun_converges(tmp_path: Path) -> None:
    # Issue 12: a sync with --prune and a journal, on a faulty server, stopped by SIGTERM
    # part-way; the same command run again leaves the instance exactly equal to the list.
    s = Server("--latency", "0.05", "--error-rate", "0.03", "--drop-after-commit-rate", "0.03")
    try:
        start = tmp_path / "start.csv"
        start.write_text(
            "email,role\n" + "".join(f"user{i}@example.com,view\n" for i in range(300)),
            encoding="utf-8",
        )
        seeded = run("import", str(start), "--instance", IID, "--no-progress", url=s.url)
        assert seeded.returncode == 0, seeded.stderr
        # 100 new, every 10th of those kept changes role, 20 leavers (under the 10 % guard).
        wanted = {f"user{i}@example.com": "admin" if i % 10 == 0 else "view" for i in range(280)}
        wanted |= {f"new{i}@example.com": "view" for i in range(100)}
        desired = tmp_path / "desired.csv"
        desired.write_text(
            "email,role\n" + "".join(f"{e},{r}\n" for e, r in wanted.items()), encoding="utf-8"
        )
        journal = tmp_path / "sync.journal"
        summary = tmp_path / "summary.json"
        args = ["sync", str(desired), "--instance", IID, "--prune", "--journal", str(journal)]
        proc = subprocess.Popen(
            cli(
                "--url",
                s.url,
                "--token",
                TOKEN,
                *args,
                "--concurrency",
                "1",
                "--summary-json",
                str(summary),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        guard = threading.Timer(HANG_GUARD, proc.kill)
        guard.start()
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if line.startswith("sync: "):
                    break
            assert seen and seen[-1].startswith("sync: "), seen
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate()
        finally:
            guard.cancel()
        assert proc.returncode == 143, err
        assert out.index("Sync plan") < out.index("Sync summary (interrupted: partial)")
        assert "Run the same command again to finish" in out
        assert "Traceback" not in err
        figures = json.loads(summary.read_text())
        assert figures["exit_status"] == 143 and figures["status"] == "interrupted"
        changed = figures["added"] + figures["updated"] + figures["removed"]
        assert 0 < changed < 100 + 28 + 20
        assert figures["total"] == changed + figures["unchanged"] + figures["failed"]

        again = run(*args, "--no-progress", url=s.url)
        assert again.returncode == 0, again.stdout + again.stderr
        listed = run("list", "--instance", IID, "--format", "csv", url=s.url)
        rows = list(csv.DictReader(listed.stdout.splitlines()))
        assert {r["email"]: r["role"] for r in rows} == wanted and len(rows) == len(wanted)
    finally:
        s.close()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_remove_file_stops_cleanly_and_a_rerun_finishes(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    # remove FILE stops through the engine's graceful stop, like import and sync: the
    # removals in flight finish and are counted, the partial summary is printed.
    s = Server("--latency", "0.05")
    try:
        n = 200
        start = tmp_path / "start.csv"
        start.write_text(
            "email,role\n" + "".join(f"user{i}@example.com,view\n" for i in range(n)),
            encoding="utf-8",
        )
        seeded = run("import", str(start), "--instance", IID, "--no-progress", url=s.url)
        assert seeded.returncode == 0, seeded.stderr
        leavers = tmp_path / "leavers.csv"
        leavers.write_text(
            "email\n" + "".join(f"user{i}@example.com\n" for i in range(0, n, 2)),
            encoding="utf-8",
        )
        summary = tmp_path / "summary.json"
        args = ["remove", str(leavers), "--instance", IID]
        proc = subprocess.Popen(
            cli(
                "--url",
                s.url,
                "--token",
                TOKEN,
                *args,
                "--concurrency",
                "2",
                "--summary-json",
                str(summary),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        guard = threading.Timer(HANG_GUARD, proc.kill)
        guard.start()
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:
                seen.append(line)
                if line.startswith("remove: "):
                    break
            assert seen and seen[-1].startswith("remove: "), seen
            proc.send_signal(sig)
            out, err = proc.communicate()
        finally:
            guard.cancel()
        assert proc.returncode == status, err
        assert "Remove summary (interrupted: partial)" in out
        assert "Run the same command again to finish" in out
        assert "Traceback" not in err
        figures = json.loads(summary.read_text())
        assert figures["exit_status"] == status and figures["status"] == "interrupted"
        assert 0 < figures["removed"] == figures["total"] < n // 2

        again = run(*args, "--no-progress", url=s.url)
        assert again.returncode == 0, again.stderr
        listed = run("list", "--instance", IID, "--format", "csv", url=s.url)
        rows = list(csv.DictReader(listed.stdout.splitlines()))
        assert sorted(r["email"] for r in rows) == sorted(
            f"user{i}@example.com" for i in range(1, n, 2)
        )
    finally:
        s.close()
