"""Adversarial findings (h13-attack): the process lifecycle of the command line.

Real ``python -m asyncmembers`` processes against a ``fake-server`` process on loopback,
stopped, starved and choked the way a user, a scheduler or a hostile environment would:
signals while standard input is silent, a second signal, a reader of stdout or stderr that
goes away, closed standard streams, a full disk (``RLIMIT_FSIZE``, so no root is needed),
an unwritable ``--summary-json``. Each test asserts what the README promises and fails on
the code it was written against (cee84ab).

Signals are delivered at points the test can see (a progress line, or the process blocked
reading its standard input); timeouts are hang guards only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_cli_subprocess import HANG_GUARD, IID, TOKEN, Server, _env, cli, run
from tests.test_cli_subprocess import server as server  # the fixture

pytestmark = pytest.mark.subprocess

#: How long a process may take to stop once it has been told to (a hang guard only).
STOP_GUARD = 20.0


def members_csv(tmp_path: Path, n: int, role: str = "view", prefix: str = "user") -> Path:
    path = tmp_path / "members.csv"
    path.write_text(
        "email,role\n" + "".join(f"{prefix}{i}@example.com,{role}\n" for i in range(n)),
        encoding="utf-8",
    )
    return path


def member_count(server: Server) -> int:
    listed = run("list", "--instance", IID, "--format", "json", url=server.url)
    assert listed.returncode == 0, listed.stderr
    count = json.loads(listed.stdout)["count"]
    assert isinstance(count, int)
    return count


def start(server: Server, *args: str, **popen: object) -> subprocess.Popen[str]:
    """``asyncmembers --url ... --token ... ARGS`` as a process (text pipes by default)."""
    options: dict[str, object] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "env": _env(),
    }
    options.update(popen)
    return subprocess.Popen(cli("--url", server.url, "--token", TOKEN, *args), **options)  # type: ignore[call-overload]


@contextlib.contextmanager
def killed_on_exit(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``proc`` after HANG_GUARD, and in any case when the block ends."""
    guard = threading.Timer(HANG_GUARD, proc.kill)
    guard.start()
    try:
        yield
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait()


def blocked_reading_a_pipe(pid: int) -> bool:
    """True when a thread of ``pid`` sleeps in the kernel reading a pipe (its stdin here)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan", encoding="ascii") as f:
                if "pipe" in f.read():
                    return True
        except OSError:
            continue
    return False


def signal_pending(pid: int, sig: signal.Signals) -> bool:
    """True while ``sig`` sent to ``pid`` has not been delivered yet (``/proc/PID/status``)."""
    bit = 1 << (sig - 1)
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    return any(int(fields.get(key, "0").strip(), 16) & bit for key in ("SigPnd", "ShdPnd"))


def wait_for(condition: Callable[[], bool], limit: float = STOP_GUARD) -> bool:
    """Poll ``condition`` until it holds or ``limit`` seconds pass (a hang guard)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


needs_proc = pytest.mark.skipif(
    not os.path.isdir(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc"
)


# -- standard input ----------------------------------------------------------------------


@needs_proc
def test_a_signal_while_stdin_is_still_silent_stops_the_import(
    server: Server, tmp_path: Path
) -> None:
    """SIGTERM while ``import -`` waits for the first bytes of its standard input.

    User sees: nothing happens - the signal is recorded by the start-up handler but the
    process stays blocked reading stdin (a second SIGTERM is recorded too, and ignored
    as well); when stdin finally reaches EOF it reports ``Error: <stdin>: no header row:
    the file is empty`` with exit status 2, a false diagnosis, and no ``--summary-json``.
    Should see: the README's "a signal while the command is still starting up stops it
    the same way" - it stops at once, exit 143.
    By hand: ``sleep 600 | asyncmembers import - --instance I & sleep 3; kill %1`` -
    it is still running; end ``sleep`` and it blames the file.
    """
    summary = tmp_path / "summary.json"
    proc = start(
        server, "import", "-", "--format", "csv", "--instance", IID,
        "--summary-json", str(summary), stdin=subprocess.PIPE,
    )  # fmt: skip
    with killed_on_exit(proc):
        wait_for(lambda: blocked_reading_a_pipe(proc.pid))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GUARD)
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
            assert proc.stdin is not None
            proc.stdin.close()  # EOF: let it end, to show what it then says
            proc.stdin = None
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.wait()
    assert not hung, f"SIGTERM ignored until stdin closed; then exit {proc.returncode}: {err!r}"
    assert "the file is empty" not in err
    assert proc.returncode == 143, err


@needs_proc
def test_sigterm_stops_an_import_whose_stdin_has_gone_quiet(server: Server, tmp_path: Path) -> None:
    """SIGTERM (and a second one) while ``import -`` waits for more rows on a pipe.

    User sees: ``producer | asyncmembers import - ...`` where the producer has sent a
    header and five rows and then stalls: none of the five rows is imported (no request
    at all), no progress line, and neither SIGTERM nor a second SIGTERM does anything -
    the process reads its standard input on the event loop's thread, so it only reacts
    once more input or EOF arrives; a scheduler has to SIGKILL it (no summary). Should
    see: the clean stop of the README, exit 143 and the partial summary.
    By hand: ``(printf 'email,role\\na@example.com,view\\n'; sleep 600) | asyncmembers
    import - --instance I & sleep 3; kill %1; kill %1`` - it keeps running.
    """
    proc = start(server, "import", "-", "--format", "csv", "--instance", IID, stdin=subprocess.PIPE)
    with killed_on_exit(proc):
        assert proc.stdin is not None
        proc.stdin.write("email,role\n" + "".join(f"slow{i}@example.com,view\n" for i in range(5)))
        proc.stdin.flush()
        # Either the five rows are in, or the process sits waiting for its stdin.
        wait_for(lambda: blocked_reading_a_pipe(proc.pid) or member_count(server) == 5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GUARD)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # "a second signal stops at once"
            try:
                proc.wait(timeout=STOP_GUARD)
            except subprocess.TimeoutExpired:
                pytest.fail("neither SIGTERM nor a second SIGTERM stopped `import -`")
    assert proc.returncode == 143


def test_import_with_standard_input_closed_is_a_one_line_error(
    server: Server, tmp_path: Path
) -> None:
    """``import -`` run with file descriptor 0 closed (a daemon, ``<&-``).

    User sees: a Python traceback ending in ``AttributeError: 'NoneType' object has no
    attribute 'buffer'``, exit status 1 ("some rows failed"). Should see: one line
    ``Error: ...`` saying standard input cannot be read, exit status 2 (a file that
    cannot be read). By hand: ``asyncmembers import - --instance I <&-``.
    """
    done = subprocess.run(
        cli("--url", server.url, "--token", TOKEN, "import", "-", "--instance", IID),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=HANG_GUARD,
        check=False,
        preexec_fn=lambda: os.close(0),
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("Error: "), done.stderr
    assert done.returncode == 2


# -- standard output and error -----------------------------------------------------------


def test_a_progress_reader_that_goes_away_does_not_abort_the_import(
    server: Server, tmp_path: Path
) -> None:
    """The reader of stderr (progress lines) exits part-way: ``import ... 2>&1 | head -1``.

    User sees: the import stops at the next progress line with no signal sent; stdout
    stays empty, the exit status is 1, and ``--summary-json`` says ``"status":
    "interrupted", "exit_status": 130, "error": "interrupted twice"`` with no counts -
    a double Ctrl-C that never happened (rich turns the EPIPE into ``SystemExit(1)``
    inside the progress task, which tears the event loop down). Should see: progress is
    best effort; the import finishes every row, exit 0, summary ``complete``.
    By hand: ``asyncmembers import big.csv --instance I --max-rate 20
    --summary-json s.json 2>&1 | head -1; cat s.json``.
    """
    n = 200
    members = members_csv(tmp_path, n)
    summary = tmp_path / "summary.json"
    # --max-rate makes the run last several progress intervals on any machine.
    proc = start(
        server, "import", str(members), "--instance", IID, "--max-rate", "20",
        "--concurrency", "2", "--summary-json", str(summary),
    )  # fmt: skip
    with killed_on_exit(proc):
        assert proc.stderr is not None and proc.stdout is not None
        first = proc.stderr.readline()
        assert first.startswith("import: "), first
        proc.stderr.close()  # the reader is gone
        proc.stdout.read()
        proc.wait()
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["status"] == "complete", figures
    assert figures["total"] == n
    assert proc.returncode == 0
    assert member_count(server) == n


def test_a_summary_reader_that_goes_away_keeps_the_summary_json_and_the_status(
    server: Server, tmp_path: Path
) -> None:
    """The reader of stdout is gone when the summary is printed: ``import ... | head -0``.

    User sees: every row imported, yet exit status 1 ("some rows failed"), nothing on
    stderr, and no ``--summary-json`` file at all - the batch job that reads it finds
    nothing. Should see: the summary JSON written (``complete``, the counts) and an exit
    status that agrees with its ``exit_status``.
    By hand: ``asyncmembers import m.csv --instance I --summary-json s.json | true;
    echo ${PIPESTATUS[0]}; cat s.json``.
    """
    n = 20
    members = members_csv(tmp_path, n)
    summary = tmp_path / "summary.json"
    proc = start(
        server, "import", str(members), "--instance", IID, "--no-progress",
        "--summary-json", str(summary),
    )  # fmt: skip
    with killed_on_exit(proc):
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # nobody reads the summary
        err = proc.stderr.read()
        proc.wait()
    assert member_count(server) == n
    assert summary.exists(), f"no --summary-json; exit {proc.returncode}, stderr {err!r}"
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["status"] == "complete" and figures["total"] == n
    assert proc.returncode == figures["exit_status"], (proc.returncode, figures)


def test_list_with_standard_output_closed_does_not_crash(server: Server) -> None:
    """``list`` run with file descriptor 1 closed (a daemon, cron, ``>&-``).

    User sees: on uvloop (the default when installed) the process aborts with a C
    assertion, ``uv__close: Assertion `fd > STDERR_FILENO' failed``, status -6/134 and
    maybe a core dump (the connection's socket got descriptor 1); on asyncio a traceback
    ``AttributeError: 'NoneType' object has no attribute 'write'``. Should see: one line
    ``Error: ...`` on stderr (or silence) and an exit status from the README's table.
    By hand: ``asyncmembers list --instance I --format json >&-; echo $?``.
    """
    done = subprocess.run(
        cli("--url", server.url, "--token", TOKEN, "list", "--instance", IID, "--format", "json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        timeout=HANG_GUARD,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert "Assertion" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1, 2), done.returncode


# -- signals -----------------------------------------------------------------------------


@needs_proc
@pytest.mark.parametrize("command", ["import", "sync"])
def test_summary_json_after_a_second_signal_still_counts_the_rows(
    tmp_path: Path, command: str
) -> None:
    """Two SIGTERMs mid-run (a scheduler that repeats itself, Ctrl-C twice).

    User sees: the rows done so far are created and journaled and stdout says "stopped
    at once after N rows", but ``--summary-json`` holds only ``command``,
    ``exit_status``, ``status`` and ``error`` - no ``total``, ``created``,
    ``skipped``, ``failed`` (README: the summary JSON has them "also when the run is
    stopped"); a batch job reading ``s["created"]`` gets a KeyError and cannot account
    for the rows. Should see: the partial counts, ``total == created + updated +
    skipped + failed`` (sync: ``added + updated + removed + unchanged + failed``).
    By hand: start ``asyncmembers import big.csv --instance I --summary-json s.json``
    against a slow server, then ``kill -TERM $pid; kill -TERM $pid; cat s.json``.
    """
    # Every request takes 5 s: the first progress line comes 2 s into the run, so the
    # requests in flight when the signals arrive have seconds left to go.
    s = Server("--latency", "5")
    try:
        members = members_csv(tmp_path, 100)
        summary = tmp_path / "summary.json"
        extra = ["--prune"] if command == "sync" else []
        proc = start(
            s, command, str(members), "--instance", IID, "--concurrency", "2",
            "--summary-json", str(summary), *extra,
        )  # fmt: skip
        with killed_on_exit(proc):
            assert proc.stderr is not None and proc.stdout is not None
            for line in proc.stderr:
                if line.startswith(f"{command}: "):
                    break
            proc.send_signal(signal.SIGTERM)
            # Two signals sent back to back may merge into one pending signal: send the
            # second once the first has been delivered.
            assert wait_for(lambda: not signal_pending(proc.pid, signal.SIGTERM))
            proc.send_signal(signal.SIGTERM)
            proc.stdout.read()
            proc.wait()
        assert proc.returncode == 143
        figures = json.loads(summary.read_text(encoding="utf-8"))
        assert figures["status"] == "interrupted"
        if command == "import":
            keys = ("total", "created", "updated", "skipped", "failed")
            parts = ("created", "updated", "skipped", "failed")
        else:
            keys = ("total", "added", "updated", "removed", "unchanged", "failed")
            parts = ("added", "updated", "removed", "unchanged", "failed")
        missing = [key for key in keys if key not in figures]
        assert not missing, f"--summary-json after a second signal lacks {missing}: {figures}"
        assert figures["total"] == sum(figures[key] for key in parts)
        # Every key a result has is there, null where the cancelled run cannot say (an
        # outside attack found requests, retries, elapsed ... missing).
        for key in ("failures_by_type", "dry_run", "elapsed", "requests", "retries"):
            assert key in figures and figures[key] is None, (key, figures)
    finally:
        s.close()


# -- files the run writes ------------------------------------------------------------------


def test_an_unwritable_summary_json_is_refused_before_any_request(
    server: Server, tmp_path: Path
) -> None:
    """``--summary-json`` in a directory that does not exist (a typo in a batch job).

    User sees: the whole import runs (every row created), then a Python traceback
    ``FileNotFoundError: ... summary.json`` and exit status 1, the summary lost. The
    same for ``--summary-json /dev/full`` (``OSError: [Errno 28]``). Should see: what
    ``--errors`` does for the same mistake - one line ``Error: --summary-json: cannot
    write ...`` and exit status 2 before any request (README: a usage or configuration
    error is "found before any request").
    By hand: ``asyncmembers import m.csv --instance I --summary-json no/such/dir/s.json``.
    """
    members = members_csv(tmp_path, 10)
    done = run(
        "import", str(members), "--instance", IID, "--no-progress",
        "--summary-json", str(tmp_path / "no-such-dir" / "summary.json"), url=server.url,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert member_count(server) == 0


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: files may not grow past ``limit`` bytes (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_under_the_journal_stops_with_one_line_and_a_summary(
    server: Server, tmp_path: Path
) -> None:
    """The journal's disk fills up part-way through an import.

    User sees: a long chained traceback: the package's own clean error ("cannot write
    journal ...: free space or choose another --journal, then run the same command
    again to resume") is buried under ``OSError: [Errno 28] No space left on device``
    raised again by ``Journal.close()`` flushing the same buffered bytes; no summary on
    stdout, no ``--summary-json``, exit 1. Should see: ``Error: cannot write journal
    ...`` on one line, the partial summary, and ``--summary-json`` with ``"status":
    "stopped"`` and counts that add up.
    By hand: a 64 KiB tmpfs (``mount -t tmpfs -o size=64k tmpfs /mnt/tiny``) and
    ``asyncmembers import 3000-rows.csv --instance I --journal /mnt/tiny/j``; here
    ``RLIMIT_FSIZE`` stands in for the full disk (EFBIG instead of ENOSPC).
    """
    members = members_csv(tmp_path, 300)
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        cli(
            "--url", server.url, "--token", TOKEN, "import", str(members), "--instance", IID,
            "--no-progress", "--journal", str(tmp_path / "import.journal"),
            "--summary-json", str(summary),
        ),
        capture_output=True, text=True, env=_env(), timeout=HANG_GUARD, check=False,
        preexec_fn=_file_size_limit(4096),
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Error: cannot write journal" in done.stderr
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["status"] == "stopped"
    assert figures["total"] == figures["created"] + figures["skipped"] + figures["failed"]


def test_a_full_disk_under_the_error_report_stops_with_one_line_and_a_summary(
    server: Server, tmp_path: Path
) -> None:
    """The ``--errors`` report's disk fills up part-way through an import.

    User sees: a traceback ending in ``report.close()`` -> ``OSError: [Errno 28] No
    space left on device`` (the failed flush is retried by ``close()`` in a
    ``finally``), exit 1, no summary and no ``--summary-json``. Should see: one line
    ``Error: ...`` naming the report, the partial summary and ``--summary-json``.
    By hand: ``--errors /mnt/tiny/errors.csv`` on a 64 KiB tmpfs with a file of a few
    thousand invalid rows; here ``RLIMIT_FSIZE`` stands in for the full disk.
    """
    members = members_csv(tmp_path, 300, role="owner")  # every row fails: all reported
    summary = tmp_path / "summary.json"
    report = tmp_path / "errors.csv"
    done = subprocess.run(
        cli(
            "--url", server.url, "--token", TOKEN, "import", str(members), "--instance", IID,
            "--no-progress", "--errors", str(report), "--summary-json", str(summary),
        ),
        capture_output=True, text=True, env=_env(), timeout=HANG_GUARD, check=False,
        preexec_fn=_file_size_limit(4096),
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "Error: " in done.stderr and str(report) in done.stderr, done.stderr
    assert summary.exists(), "no --summary-json after the report's disk filled up"
