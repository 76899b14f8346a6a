"""A signal while the command line is still loading: the same clean stop as a moment later.

The first few hundred milliseconds of ``asyncmembers import`` went to loading click,
aiohttp and the engine, with Python's default handlers in place: a SIGTERM there (a
scheduler cancelling a job as it starts) killed the process with status -15 and no summary.

No timing here: each child process sends itself the signal from an import hook, at the
moment aiohttp is first imported, which is while the command line is loading and before
any command has put its own handlers in place.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli_subprocess import HANG_GUARD, IID, TOKEN, Server, _env, run
from tests.test_cli_subprocess import server as server  # the fixture

pytestmark = pytest.mark.subprocess

#: Runs the console script's ``main`` after an import hook that sends the process its own
#: signal(s) when aiohttp is first imported.
CHILD = """
import importlib.abc, os, signal, sys

SIGNALS = [signal.Signals[name] for name in sys.argv[1].split(",")]


class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "aiohttp" and SIGNALS:
            while SIGNALS:
                os.kill(os.getpid(), SIGNALS.pop(0))
        return None


sys.meta_path.insert(0, Hook())
from asyncmembers.cli import main

assert "aiohttp" not in sys.modules, "the console script loaded aiohttp before main()"
main(sys.argv[2:])
"""


def _terminal_signals() -> None:
    # As a terminal starts a command. A shell's background job (`bash .ci/run &`) passes
    # SIGINT on ignored, and Python, like the command line, leaves an inherited ignore
    # alone: the SIGINT tests here would then see the signal ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def python_c(code: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args`` to its end."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**_env(), **env},
        timeout=HANG_GUARD,
        check=False,
        preexec_fn=_terminal_signals,
    )


def launch(signals: str, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console script's ``main(args)``, sent ``signals`` while it loads."""
    api = () if url is None else ("--url", url, "--token", TOKEN)
    return python_c(CHILD, signals, *api, *args)


def members_csv(tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "members.csv"
    path.write_text(
        "email,role\n" + "".join(f"user{i}@example.com,view\n" for i in range(n)),
        encoding="utf-8",
    )
    return path


def listed(server: Server) -> list[str]:
    done = run("list", "--instance", IID, "--format", "json", url=server.url)
    assert done.returncode == 0, done.stderr
    return sorted(m["email"] for m in json.loads(done.stdout).get("items", []))


@pytest.mark.parametrize(("sig", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_import_stopped_while_loading_prints_its_summary_and_sends_nothing(
    server: Server, tmp_path: Path, sig: str, status: int
) -> None:
    members = members_csv(tmp_path)
    journal = tmp_path / "import.journal"
    summary = tmp_path / "summary.json"
    args = ["import", str(members), "--instance", IID, "--journal", str(journal)]
    done = launch(
        sig,
        *args,
        "--no-progress",
        "--summary-json",
        str(summary),
        url=server.url,
    )
    assert done.returncode == status, done.stderr
    assert "Import summary (interrupted: partial)" in done.stdout
    assert "Run the same command again to finish" in done.stdout
    assert "Traceback" not in done.stderr
    figures = json.loads(summary.read_text())
    assert figures["exit_status"] == status and figures["status"] == "interrupted"
    assert figures["total"] == 0 and figures["requests"] == 0
    assert listed(server) == []  # nothing was sent

    again = run(*args, "--no-progress", url=server.url)
    assert again.returncode == 0, again.stderr
    assert len(listed(server)) == 20


def test_sync_stopped_while_loading_changes_nothing(server: Server, tmp_path: Path) -> None:
    run("add", "--instance", IID, "--email", "old@example.com", "--role", "view", url=server.url)
    done = launch(
        "SIGTERM",
        "sync",
        str(members_csv(tmp_path, 3)),
        "--instance",
        IID,
        "--prune",
        "--no-progress",
        url=server.url,
    )
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    assert "Terminated (SIGTERM)" in done.stdout + done.stderr
    assert listed(server) == ["old@example.com"]


def test_remove_file_stopped_while_loading_removes_nothing(server: Server, tmp_path: Path) -> None:
    run("import", str(members_csv(tmp_path, 3)), "--instance", IID, url=server.url)
    done = launch(
        "SIGTERM",
        "remove",
        str(members_csv(tmp_path, 3)),
        "--instance",
        IID,
        "--no-progress",
        url=server.url,
    )
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    assert len(listed(server)) == 3


def test_a_command_without_a_graceful_stop_is_cancelled(server: Server) -> None:
    done = launch("SIGTERM", "list", "--instance", IID, url=server.url)
    assert done.returncode == 143, done.stderr
    assert "Terminated (SIGTERM)." in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_help_interrupted_while_loading_still_exits_with_the_signal() -> None:
    done = launch("SIGTERM", "--help")
    assert done.returncode == 143, done.stderr
    assert "Terminated (SIGTERM)." in done.stderr


def test_two_signals_while_loading_end_it_at_once() -> None:
    done = launch("SIGTERM,SIGTERM", "list", "--instance", IID)
    assert done.returncode == 143, done.stderr
    assert "Terminated (SIGTERM)." in done.stderr
    assert "Traceback" not in done.stderr


def test_fake_server_stopped_while_loading_ends_cleanly() -> None:
    done = launch("SIGTERM", "fake-server", "--port", "0")
    assert done.returncode == 0, done.stderr
    assert "Stopped (SIGTERM)" in done.stderr
    assert "Traceback" not in done.stderr


def test_embedding_main_leaves_the_default_handlers_in_place() -> None:
    # A program calling main() in-process gets its own handlers back afterwards.
    code = (
        "import signal\n"
        "from asyncmembers.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGTERM)\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "print('ok')\n"
    )
    done = python_c(code)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "ok", done.stderr


def test_loading_the_package_does_not_load_aiohttp() -> None:
    # The window the early handlers close: `import asyncmembers` and the console script's
    # module load only what they need to install them.
    code = (
        "import sys\nimport asyncmembers, asyncmembers.cli\n"
        "print(sorted(m for m in ('aiohttp', 'click', 'attrs') if m in sys.modules))\n"
        "from asyncmembers import Client\nprint('aiohttp' in sys.modules)\n"
    )
    done = python_c(code, PYTHONWARNINGS="error")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_a_misspelt_public_name_is_an_attribute_error() -> None:
    import asyncmembers

    with pytest.raises(AttributeError, match="no attribute 'Cleint'"):
        asyncmembers.Cleint  # noqa: B018
    assert "Client" in dir(asyncmembers)
