"""Adversarial findings (h8-attack): the command line as users (mis)use it.

Real processes against a ``fake-server`` process on loopback. Each test asserts the
behaviour SPEC section 3 / the README promise and fails on the code it was written against.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TOKEN = "attack-cli-s3cret-token"
IID = "575ec8687ae143cd83dc4a97"
GUARD = 60.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOSANT_")}
    env["COLUMNS"] = "120"
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "asyncmembers", *args]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    proc = subprocess.Popen(
        cli("fake-server", "--port", "0", "--token", TOKEN, "--instance", IID),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    guard = threading.Timer(300, proc.kill)
    guard.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), line
        yield line
    finally:
        guard.cancel()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def run(url: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli("--url", url, "--token", TOKEN, *args),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=GUARD,
        check=False,
        **kw,  # type: ignore[arg-type]
    )


def write_rows(path: Path, n: int, prefix: str) -> Path:
    path.write_text("email,role\n" + "".join(f"{prefix}{i}@example.com,view\n" for i in range(n)))
    return path


def assert_one_line_usage_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-800:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-800:])
    assert proc.stderr.strip().splitlines()[-1].startswith("Error:"), proc.stderr[-800:]


def test_journal_dev_null_is_a_one_line_refusal(url: str, tmp_path: Path) -> None:
    """`--journal /dev/null` (a device, not a regular file) must be refused with exit 2 and
    one `Error:` line, not a traceback ending in `OSError: [Errno 22]` with exit 1."""
    src = write_rows(tmp_path / "in.csv", 2, "devnull")
    proc = run(
        url, "import", str(src), "--instance", IID, "--journal", "/dev/null", "--no-progress"
    )
    assert_one_line_usage_error(proc)


@pytest.mark.parametrize("codec", ["rot13", "hex"])
def test_non_text_encoding_is_a_one_line_usage_error(url: str, tmp_path: Path, codec: str) -> None:
    """`--encoding rot13` names a codec that is not a text encoding: a usage error (exit 2,
    one line), not a LookupError traceback with exit 1."""
    src = write_rows(tmp_path / "in.csv", 2, f"enc{codec}")
    proc = run(url, "import", str(src), "--instance", IID, "--encoding", codec, "--no-progress")
    assert_one_line_usage_error(proc)


def test_journal_same_path_as_summary_json_is_refused(url: str, tmp_path: Path) -> None:
    """`--journal P --summary-json P`: the summary would overwrite the journal, so the run is
    not resumable (a re-run refuses the journal as damaged). Journals aliasing an output
    must be refused up front (exit 2, nothing sent), like `--journal` == `--errors`."""
    src = write_rows(tmp_path / "in.csv", 3, "sumalias")
    target = tmp_path / "state.json"
    proc = run(
        url,
        "import",
        str(src),
        "--instance",
        IID,
        "--journal",
        str(target),
        "--summary-json",
        str(target),
        "--no-progress",
    )
    assert_one_line_usage_error(proc)


def test_huge_concurrency_with_two_rows_stays_in_bounded_memory(url: str, tmp_path: Path) -> None:
    """`--concurrency 100000000` on a 2-row file: memory must stay bounded (workers beyond
    the rows, or a cap); the code under test exhausted 24 GB and was OOM-killed. Run here
    under a 1.5 GB address-space cap, which a bounded run never approaches."""
    src = write_rows(tmp_path / "in.csv", 2, "bigconc")

    def cap() -> None:
        limit = 1536 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.monotonic()
    proc = run(
        url,
        "import",
        str(src),
        "--instance",
        IID,
        "--concurrency",
        "100000000",
        "--no-progress",
        preexec_fn=cap,
    )
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-800:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-800:]
    assert time.monotonic() - start < 30


def test_sigint_stops_promptly_while_rows_wait_for_the_rate_cap(url: str, tmp_path: Path) -> None:
    """With `--max-rate 0.02` the second row waits ~50 s for its slot. Ctrl-C stops reading
    rows and lets rows *in flight* finish; a row still waiting for the pacer has sent
    nothing and must not hold the stop for the whole pacing interval. Expect exit 130
    within a few seconds, with the summary."""
    src = write_rows(tmp_path / "in.csv", 5, "paced")
    journal = tmp_path / "paced.journal"
    proc = subprocess.Popen(
        cli(
            "--url",
            url,
            "--token",
            TOKEN,
            "import",
            str(src),
            "--instance",
            IID,
            "--max-rate",
            "0.02",
            "--journal",
            str(journal),
            "--no-progress",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("one SIGINT did not stop the paced import within 8 s") from None
    assert proc.returncode == 130, (proc.returncode, err[-800:])
    assert "Interrupted again" not in err


@pytest.mark.parametrize("option", ["--errors", "--summary-json"])
def test_output_path_that_is_the_input_is_refused_and_input_kept(
    url: str, tmp_path: Path, option: str
) -> None:
    """`import in.csv --errors in.csv` (or `--summary-json in.csv`): the code under test
    truncates the user's input file and overwrites it with the error report / summary,
    exiting 0. An output that is the input must be refused (exit 2, one line), and the
    input file must be left byte for byte as it was."""
    src = write_rows(tmp_path / "in.csv", 3, f"alias{option.strip('-')}")
    before = src.read_bytes()
    proc = run(url, "import", str(src), "--instance", IID, option, str(src), "--no-progress")
    assert src.read_bytes() == before, "the input file was overwritten"
    assert_one_line_usage_error(proc)


def test_control_character_in_token_error_names_the_token_not_the_url(
    url: str, tmp_path: Path
) -> None:
    """A token with a line break is refused (good), but the one-line error blames `--url:`;
    it must name the token (--token / LOSANT_API_TOKEN), and never show the token."""
    src = write_rows(tmp_path / "in.csv", 1, "ctrltok")
    env = _env()
    env["LOSANT_API_TOKEN"] = "attack-bad-token-123\nX-Evil: 1"
    proc = subprocess.run(
        cli("--url", url, "import", str(src), "--instance", IID, "--no-progress"),
        capture_output=True,
        text=True,
        env=env,
        timeout=GUARD,
        check=False,
    )
    assert_one_line_usage_error(proc)
    last = proc.stderr.strip().splitlines()[-1]
    assert "attack-bad-token-123" not in proc.stderr + proc.stdout
    assert not last.startswith("Error: --url"), last
    assert "token" in last.lower(), last


@pytest.mark.parametrize("command", ["sync", "remove"])
def test_spec_section_6_commands_exist(url: str, command: str) -> None:
    """SPEC section 6 pins `asyncmembers sync FILE ...` and `asyncmembers remove ...`;
    the installed command answers "No such command"."""
    proc = subprocess.run(
        cli(command, "--help"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=GUARD,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-400:]


def test_import_update_roles_option_exists(url: str) -> None:
    """SPEC section 6: `asyncmembers import ... --update-roles` and `add ... --update-role`."""
    imp = subprocess.run(
        cli("import", "--help"),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=GUARD,
        check=False,
    )
    add = subprocess.run(
        cli("add", "--help"), capture_output=True, text=True, env=_env(), timeout=GUARD, check=False
    )
    assert "--update-roles" in imp.stdout
    assert "--update-role" in add.stdout


def test_journal_with_a_garbage_line_in_the_middle_is_refused(url: str, tmp_path: Path) -> None:
    """A journal whose header is fine but whose 5th line (not the last) is garbage is a
    damaged journal: only a torn *last* line may be ignored. The re-run must refuse it
    (exit 2, one line) instead of silently resuming from a journal it cannot read."""
    src = write_rows(tmp_path / "in.csv", 10, "midjournal")
    journal = tmp_path / "run.journal"
    first = run(
        url, "import", str(src), "--instance", IID, "--journal", str(journal), "--no-progress"
    )
    assert first.returncode == 0, first.stderr[-400:]
    lines = journal.read_text().splitlines(keepends=True)
    assert len(lines) > 6
    lines[4] = "GARBAGE{{{ not a journal line\n"
    journal.write_text("".join(lines))
    again = run(
        url, "import", str(src), "--instance", IID, "--journal", str(journal), "--no-progress"
    )
    assert_one_line_usage_error(again)


_RATE_LIMITED_SERVER = r"""
import asyncio, sys
from aiohttp import web

async def handler(request):
    return web.json_response({"type": "TooManyRequests", "message": "slow down"},
                             status=429, headers={"Retry-After": "30"})

async def main():
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_sigterm_stops_promptly_during_a_429_retry_after_pause(tmp_path: Path) -> None:
    """Every request is answered 429 with `Retry-After: 30`. SIGTERM during that pause must
    stop cleanly (summary, exit 143) within seconds: nothing is in flight. The code under
    test keeps waiting until RetryPolicy.timeout (120 s) runs out: the reproduction took
    117 s from the SIGTERM to the exit."""
    server = subprocess.Popen(
        [sys.executable, "-c", _RATE_LIMITED_SERVER], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), base
        src = write_rows(tmp_path / "in.csv", 2, "ratelimited")
        proc = subprocess.Popen(
            cli(
                "--url",
                base,
                "--token",
                TOKEN,
                "import",
                str(src),
                "--instance",
                IID,
                "--no-progress",
                "--summary-json",
                str(tmp_path / "sum.json"),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(
                "SIGTERM during a 429 pause did not stop the import within 10 s"
            ) from None
        assert proc.returncode == 143, (proc.returncode, err[-600:])
        summary = json.loads((tmp_path / "sum.json").read_text())
        assert summary["status"] in ("interrupted", "stopped")
    finally:
        server.kill()
        server.communicate()


def test_errors_report_through_a_symlink_to_the_input_is_refused(url: str, tmp_path: Path) -> None:
    """`--errors link` where `link` is a symlink to the input: the code under test truncates
    the input, then reads back its own failed rows as new rows, re-failing and re-writing
    them until a row passes 1 MiB (the input file grows to megabytes of nested garbage).
    It must be refused (exit 2) with the input untouched."""
    src = tmp_path / "in.csv"
    src.write_text("email,role\nnot-an-email,view\n")
    before = src.read_bytes()
    link = tmp_path / "errors.csv"
    link.symlink_to(src)
    proc = run(url, "import", str(src), "--instance", IID, "--errors", str(link), "--no-progress")
    assert src.read_bytes() == before, f"input rewritten ({src.stat().st_size} bytes now)"
    assert_one_line_usage_error(proc)


def test_errors_report_and_summary_json_on_one_path_is_refused(url: str, tmp_path: Path) -> None:
    """`--errors P --summary-json P`: the summary overwrites the failed rows just written
    (the CLI even says "1 failed row written to P"). Refuse the clash up front (exit 2)."""
    src = tmp_path / "in.csv"
    src.write_text("email,role\nnot-an-email,view\n")
    out = tmp_path / "out.txt"
    proc = run(
        url,
        "import",
        str(src),
        "--instance",
        IID,
        "--errors",
        str(out),
        "--summary-json",
        str(out),
        "--no-progress",
    )
    assert_one_line_usage_error(proc)
