"""kill -9 at random points, then resume: every row ends applied once, and the journal copes.

The end-to-end test runs the real command line in subprocesses: ``python -m asyncmembers
fake-server`` (with latency and a few faults, so an import takes a while) and ``python -m
asyncmembers import FILE --journal J``, which it kills with SIGKILL several times, each
time once the journal shows progress (plus a random delay), and then runs to completion.
The instance must end with exactly the file's rows (checked by listing it with the
client) and the last run must exit 0.

The journal is also tested directly: a file cut at *every* byte offset (as a kill in
the middle of a write leaves it) must load without error, keep every complete line, and
take new records on a line of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncmembers as am
from asyncmembers.bulk._journal import Journal

pytestmark = pytest.mark.subprocess

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "575ec8687ae143cd83dc4a98"
TOKEN = "kill-secret-token-9f2c"
ROOT = Path(__file__).resolve().parent.parent


# -- end to end -----------------------------------------------------------------------------


def write_members_csv(path: Path, n: int, seed: int) -> set[str]:
    """A CSV of valid rows only (emails, userIds, case/space duplicates); their identities."""
    rng = random.Random(seed)
    lines = ["email,userId,role,note"]
    identities: set[str] = set()
    for i in range(n):
        if i % 7 == 3:
            user_id = "".join(rng.choice("0123456789abcdef") for _ in range(24))
            lines.append(f",{user_id.upper()},view,by id")
            identities.add("u:" + user_id)
        else:
            email = f"kill{i}.{rng.randrange(10**6)}@example.com"
            lines.append(f'{email},,{rng.choice(["admin", "view"])},"a, quoted note"')
            identities.add("e:" + email.lower())
        if i % 50 == 10:  # a repeat of the row just written, differently cased and padded
            last = lines[-1].split(",")
            lines.append(f" {last[0].upper()} ,{last[1].lower()},VIEW,repeat")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return identities


def python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "asyncmembers", *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[str]:
    """A ``python -m asyncmembers fake-server`` subprocess; yields its URL."""
    log = (tmp_path / "server.err").open("wb")
    proc = subprocess.Popen(
        python_m(
            "fake-server",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--instance",
            IID,
            "--latency",
            "0.02",
            "--error-rate",
            "0.03",
            "--drop-after-commit-rate",
            "0.03",
            "--seed",
            "7",
        ),
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), (url, (tmp_path / "server.err").read_text())
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if shutdown hangs
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        log.close()


def journal_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def import_command(csv_path: Path, journal: Path, url: str) -> list[str]:
    return python_m(
        "import",
        str(csv_path),
        "--instance",
        IID,
        "--journal",
        str(journal),
        "--url",
        url,
        "--token",
        TOKEN,
        "--concurrency",
        "8",
        "--no-progress",
    )


async def list_identities(url: str) -> list[str]:
    async with am.Client(TOKEN, url=url) as client:
        members = await client.instance_members.get(instanceId=IID)
    out = []
    for m in members.items:
        out.append("e:" + m.email.lower() if m.email else "u:" + str(m.user_id).lower())
    return out


def test_kill_9_at_random_points_then_resume(fake_server: str, tmp_path: Path) -> None:
    url = fake_server
    csv_path = tmp_path / "members.csv"
    expected = write_members_csv(csv_path, 900, seed=11)
    journal = tmp_path / "import.journal"
    rng = random.Random(2024)
    kills = 0
    for run in range(4):
        before = journal_lines(journal)
        out = (tmp_path / f"run{run}.out").open("wb")
        proc = subprocess.Popen(
            import_command(csv_path, journal, url),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=child_env(),
        )
        try:
            # Kill once this run has made progress, after a random extra moment: anywhere
            # in the middle of the work, including mid-write of a journal line.
            give_up = time.monotonic() + 30
            while journal_lines(journal) < before + 5 and proc.poll() is None:
                assert time.monotonic() < give_up, "the import made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.wait()
            out.close()
        assert proc.returncode in (-signal.SIGKILL, 0), (tmp_path / f"run{run}.out").read_text()
    assert kills >= 3, "the imports finished before they could be killed; slow the server"

    final = subprocess.run(
        import_command(csv_path, journal, url),
        capture_output=True,
        cwd=ROOT,
        env=child_env(),
        timeout=120,
    )
    output = final.stdout.decode() + final.stderr.decode()
    assert final.returncode == 0, output
    assert TOKEN not in output

    members = asyncio.run(list_identities(url))
    assert len(members) == len(set(members)), "a user is a member twice"
    assert set(members) == expected


# -- the journal, cut anywhere --------------------------------------------------------------


def full_journal(tmp_path: Path) -> tuple[bytes, list[set[str]]]:
    """A journal's bytes, and the keys done after each complete line."""
    path = tmp_path / "full.journal"
    j = Journal(path, IID)
    j.record(0, ("e:ann@example.com",), "created")
    j.record(1, ("u:" + "a" * 24, "e:both@example.com"), "skipped")
    j.record(2, ("e:bad@example.com",), "failed")
    j.record(3, ("e:ünï@example.com",), "created")
    j.close()
    data = path.read_bytes()
    done: list[set[str]] = []
    keys: set[str] = set()
    for line in data.splitlines():
        entry = json.loads(line)
        if entry.get("outcome") in ("created", "skipped"):
            keys.add(entry["key"])
        done.append(set(keys))
    return data, done


def test_journal_cut_at_every_byte_loads_and_resumes(tmp_path: Path) -> None:
    data, done_after = full_journal(tmp_path)
    line_ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    for cut in range(len(data) + 1):
        path = tmp_path / f"cut{cut}.journal"
        path.write_bytes(data[:cut])
        complete = sum(1 for end in line_ends if end <= cut)
        expected = done_after[complete - 1] if complete else set()

        j = Journal(path, IID)  # never fatal: a torn header is a new journal
        # Every complete line counts; a torn one may count only if it is whole JSON.
        done = held(j, ALL_KEYS)
        assert expected <= done <= done_after[min(complete, len(done_after) - 1)], cut
        j.record(9, ("e:new@example.com",), "created")
        j.close()

        # A new line never lands on the torn one: every line but the torn one parses.
        lines = path.read_bytes().splitlines()
        bad = [line for line in lines if not _is_json(line)]
        assert len(bad) <= 1, (cut, bad)
        # The header is there (written again if it was torn): another instance is refused.
        with pytest.raises(am.ValidationError, match="belongs to instance"):
            Journal(path, OTHER_IID)
        again = Journal(path, IID)
        assert expected | {"e:new@example.com"} <= held(again, ALL_KEYS | {"e:new@example.com"}), (
            cut
        )
        again.close()


ALL_KEYS = {
    "e:ann@example.com",
    "u:" + "a" * 24,
    "e:both@example.com",
    "e:bad@example.com",
    "e:ünï@example.com",
}


def held(journal: Journal, candidates: set[str]) -> set[str]:
    """Which of ``candidates`` the journal holds as done (it keeps digests, not strings)."""
    return {key for key in candidates if key in journal.done}


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("garbage", [b"\xff\xfe garbage \x00\n", b"[1, 2]\n"])
def test_journal_with_garbage_in_the_middle_is_refused_naming_the_line(
    tmp_path: Path, garbage: bytes
) -> None:
    # Only a write cut by a kill may leave an unreadable line (the last, or a cut row line
    # a resumed run ended): anything else is damage, and a damaged journal is not trusted
    # (h8-attack: test_journal_with_a_garbage_line_in_the_middle_is_refused).
    path = tmp_path / "j.journal"
    path.write_bytes(
        b'{"asyncmembers_journal":1,"instanceId":"' + IID.encode() + b'"}\n'
        b'{"row":0,"key":"e:a@example.com","outcome":"created"}\n'
        + garbage
        + b'{"row":3,"key":"e:c@example.com","outcome":"skipped"}\n'
    )
    with pytest.raises(am.ValidationError, match="line 3 is not a journal line"):
        Journal(path, IID)


def test_journal_with_odd_rows_and_a_torn_last_line_is_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    path.write_bytes(
        b'{"asyncmembers_journal":1,"instanceId":"' + IID.encode() + b'"}\n'
        b'{"row":0,"key":"e:a@example.com","outcome":"created"}\n'
        b'{"row":1,"key":42,"outcome":"created"}\n'
        b'{"row":2,"key":"e:b@example.com","outcome":"weird"}\n'
        b'{"row":3,"key":"e:c@example.com","outcome":"skipped"}\n'
        b'{"row":4,"key":"e:d@exa'
    )
    j = Journal(path, IID)
    try:
        candidates = {f"e:{c}@example.com" for c in "abcd"}
        assert held(j, candidates) == {"e:a@example.com", "e:c@example.com"}
        assert len(j.done) == 2
    finally:
        j.close()


async def test_resume_with_a_journal_torn_mid_line_adds_nothing_twice(tmp_path: Path) -> None:
    """The importer over a journal cut mid-line: done rows skipped, the rest added once."""
    from asyncmembers.testing import FakeLosantServer

    rows = [{"email": f"t{i}@example.com", "role": "view"} for i in range(30)]
    journal = tmp_path / "j.journal"
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID]) as server:
        async with am.Client(TOKEN, url=server.url) as client:
            await am.bulk_import(client, instanceId=IID, members=rows[:20], journal=journal)
            data = journal.read_bytes()
            journal.write_bytes(data[: len(data) - 7])  # the last record torn
            result = await am.bulk_import(client, instanceId=IID, members=rows, journal=journal)
        assert result.total == 30 and result.ok
        assert result.skipped_by_reason == {"done in an earlier run": 19, "already a member": 1}
        assert result.created == 10
        assert server.stats.posts_applied == 30
        assert len(server.members(IID)) == 30


async def test_a_kill_while_a_row_is_in_flight_never_marks_it_done(tmp_path: Path) -> None:
    """The row is in flight; its duplicate, later in the input, is skipped; then the kill.

    The journal must not say the row is done: a re-run would skip it, and it would
    never be added (found by the kill -9 test, where a row repeated just after itself
    went missing).
    """
    from asyncmembers.testing import FakeLosantServer, Faults

    rows = [
        {"email": "slow@example.com", "role": "view"},
        {"email": " SLOW@example.com ", "role": "admin"},
    ]
    journal = tmp_path / "j.journal"
    async with (
        FakeLosantServer(
            tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=Faults(latency=0.3)
        ) as server,
        am.Client(TOKEN, url=server.url) as client,
    ):
        task: asyncio.Task[am.BulkResult] | None = None

        def kill_on_duplicate(outcome: am.Outcome) -> None:
            if outcome.index == 1:
                assert task is not None
                task.cancel()  # as a kill -9 would: nothing after this point is written

        task = asyncio.create_task(
            am.bulk_import(
                client,
                instanceId=IID,
                members=rows,
                journal=journal,
                on_outcome=kill_on_duplicate,
            )
        )
        with pytest.raises(asyncio.CancelledError):
            await task
    j = Journal(journal, IID)
    try:
        assert "e:slow@example.com" not in j.done
    finally:
        j.close()


# -- sync: kill -9 mid-apply, then a re-run converges --------------------------------------

SYNC_SCRIPT = """
import asyncio, json, sys
import asyncmembers as am

async def main():
    url, desired, journal, token, iid = sys.argv[1:6]
    with open(desired) as f:
        rows = json.load(f)
    retry = am.RetryPolicy(attempts=10, wait_initial=0.005, wait_max=0.05, timeout=60)
    async with am.Client(token, url=url, retry=retry) as client:
        result = await am.sync_members(
            client, instanceId=iid, members=iter(rows), prune=True, max_removals=10_000,
            concurrency=8, journal=journal,
        )
    print(json.dumps(result.to_dict()))
    return 0 if result.ok else 1

sys.exit(asyncio.run(main()))
"""


def change_lines(path: Path) -> int:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return sum(
        data.count(f'"outcome":"{kind}"'.encode()) for kind in ("created", "updated", "removed")
    )


async def seed_members(url: str, members: dict[str, str]) -> None:
    rows = [{"email": email, "role": role} for email, role in members.items()]
    retry = am.RetryPolicy(attempts=10, wait_initial=0.005, wait_max=0.05, timeout=60)
    async with am.Client(TOKEN, url=url, retry=retry) as client:
        result = await am.bulk_import(client, instanceId=IID, members=rows, concurrency=16)
    assert result.created == len(rows), result


async def members_by_email(url: str) -> dict[str, str]:
    async with am.Client(TOKEN, url=url) as client:
        members = await client.instance_members.get(instanceId=IID)
    out: dict[str, str] = {}
    for m in members.items:
        assert m.email is not None and m.email.lower() not in out
        out[m.email.lower()] = str(m.role)
    return out


def test_kill_9_mid_sync_then_a_rerun_converges(fake_server: str, tmp_path: Path) -> None:
    url = fake_server
    rng = random.Random(77)
    current = {f"cur{i}@example.com": rng.choice(["view", "admin"]) for i in range(400)}
    asyncio.run(seed_members(url, current))
    desired: list[dict[str, str]] = []
    for i, (email, role) in enumerate(current.items()):
        if i % 4 == 0:
            continue  # leaves
        if i % 4 == 1:
            role = "admin" if role == "view" else "view"
        desired.append({"email": email, "role": role})
    desired += [{"email": f"joiner{i}@example.com", "role": "view"} for i in range(100)]
    rng.shuffle(desired)
    want = {row["email"]: row["role"] for row in desired}
    desired_path = tmp_path / "desired.json"
    desired_path.write_text(json.dumps(desired))
    script = tmp_path / "sync.py"
    script.write_text(SYNC_SCRIPT)
    journal = tmp_path / "sync.journal"
    command = [sys.executable, str(script), url, str(desired_path), str(journal), TOKEN, IID]

    kills = 0
    for run in range(3):
        before = change_lines(journal)
        out = (tmp_path / f"sync{run}.out").open("wb")
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env()
        )
        try:
            give_up = time.monotonic() + 60
            while change_lines(journal) < before + 5 and proc.poll() is None:
                assert time.monotonic() < give_up, "the sync made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.wait()
            out.close()
        assert proc.returncode in (-signal.SIGKILL, 0), (tmp_path / f"sync{run}.out").read_text()
    assert kills >= 2, "the syncs finished before they could be killed; slow the server"

    final = subprocess.run(command, capture_output=True, cwd=ROOT, env=child_env(), timeout=120)
    output = final.stdout.decode() + final.stderr.decode()
    assert final.returncode == 0, output
    assert TOKEN not in output
    figures = json.loads(final.stdout.decode().strip().splitlines()[-1])
    # The last run accounts for every row once (plus what it had left to remove).
    assert figures["total"] == len(desired) + figures["removed"]
    assert asyncio.run(members_by_email(url)) == want


# -- remove FILE: kill -9 mid-run, then a re-run with the journal converges -----------------


def removed_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b'"outcome":"removed"')
    except FileNotFoundError:
        return 0


def test_kill_9_mid_remove_then_a_rerun_converges(fake_server: str, tmp_path: Path) -> None:
    url = fake_server
    rng = random.Random(91)
    current = {f"gone{i}@example.com": rng.choice(["view", "admin"]) for i in range(300)}
    asyncio.run(seed_members(url, current))
    leavers = rng.sample(sorted(current), 200)
    rows = [e.upper() if i % 5 == 0 else e for i, e in enumerate(leavers)]
    rows += [f"never{i}@example.com" for i in range(20)]  # not members: skipped
    rng.shuffle(rows)
    leavers_csv = tmp_path / "leavers.csv"
    leavers_csv.write_text("email,role\n" + "".join(f"{e},owner\n" for e in rows))
    journal = tmp_path / "remove.journal"
    summary = tmp_path / "summary.json"
    command = python_m(
        "--url",
        url,
        "--token",
        TOKEN,
        "remove",
        str(leavers_csv),
        "--instance",
        IID,
        "--journal",
        str(journal),
        "--concurrency",
        "4",
        "--no-progress",
        "--summary-json",
        str(summary),
    )
    kills = 0
    for run in range(3):
        before = removed_lines(journal)
        out = (tmp_path / f"remove{run}.out").open("wb")
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env()
        )
        try:
            give_up = time.monotonic() + 60
            while removed_lines(journal) < before + 5 and proc.poll() is None:
                assert time.monotonic() < give_up, "the removal made no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:  # pragma: no cover
                proc.kill()
                proc.wait()
            out.close()
        assert proc.returncode in (-signal.SIGKILL, 0), (tmp_path / f"remove{run}.out").read_text()
    assert kills >= 2, "the runs finished before they could be killed; slow the server"

    final = subprocess.run(command, capture_output=True, cwd=ROOT, env=child_env(), timeout=120)
    output = final.stdout.decode() + final.stderr.decode()
    assert final.returncode == 0, output
    assert TOKEN not in output
    figures = json.loads(summary.read_text())
    # The last run accounts for every row once: most were done by the killed runs.
    assert figures["total"] == len(rows) == figures["removed"] + figures["skipped"]
    assert figures["skipped_by_reason"].get("done in an earlier run", 0) > 0
    want = {e: r for e, r in current.items() if e not in set(leavers)}
    assert asyncio.run(members_by_email(url)) == want
