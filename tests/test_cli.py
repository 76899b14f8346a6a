"""The command line, in process, against the embedded server over real loopback HTTP.

Each command calls ``asyncio.run`` itself, so it runs in a worker thread
(``asyncio.to_thread(runner.invoke, ...)``) while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from asyncmembers.cli import _output, cli
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "575ec8687ae143cd83dc4a98"
MISSING_IID = "0123456789abcdef01234567"
TOKEN = "cli-s3cret-Token-9f8e7d"
READ_TOKEN = "cli-read-only-token-4c3b2a"
NO_SCOPE_TOKEN = "cli-device-token-1a2b3c"
UID = "5f0c1a2b3c4d5e6f7a8b9c0d"

#: Environment for every run: no token or URL leaking in from the developer's shell.
CLEAN_ENV: dict[str, str | None] = {
    "LOSANT_API_TOKEN": None,
    "LOSANT_API_URL": None,
    "LOSANT_INSTANCE_ID": None,
}


@pytest.fixture
def losant_server_tokens() -> Mapping[str, Sequence[str]]:
    return {
        TOKEN: ["all.Instance"],
        READ_TOKEN: ["all.Instance.read"],
        NO_SCOPE_TOKEN: ["devices.get"],
    }


@pytest.fixture
def losant_server_instances() -> list[str]:
    return [IID, OTHER_IID]


async def run(
    server: FakeLosantServer | None,
    *args: str,
    token: str | None = TOKEN,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Invoke ``asyncmembers --url <server> --token <token> *args`` in a worker thread."""
    argv: list[str] = []
    if server is not None:
        argv += ["--url", server.url]
    if token is not None:
        argv += ["--token", token]
    runner = CliRunner(env={**CLEAN_ENV, **(env or {})})
    return await asyncio.to_thread(
        runner.invoke, cli, [*argv, *args], input=input, catch_exceptions=False
    )


def one_error_line(result: Result) -> str:
    """The single ``Error: ...`` line a failed command prints (and nothing like a traceback)."""
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def emails(server: FakeLosantServer, iid: str = IID) -> list[str]:
    return sorted(m["email"].lower() for m in server.members(iid) if "email" in m)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# -- list ------------------------------------------------------------------------------


@pytest.fixture
def populated(losant_server: FakeLosantServer) -> FakeLosantServer:
    losant_server.add_member(IID, email="carol@example.org", role="view")
    losant_server.add_member(IID, email="Ada@example.com", role="admin")
    losant_server.add_member(IID, email="bob@example.com", role="view")
    return losant_server


async def test_list_defaults_to_json_when_piped(populated: FakeLosantServer) -> None:
    result = await run(populated, "list", "--instance", IID)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["count"] == 3
    assert [m["email"] for m in data["items"]] == [
        "Ada@example.com",
        "bob@example.com",
        "carol@example.org",
    ]
    assert {m["role"] for m in data["items"]} == {"admin", "view"}
    assert "_links" not in data and all("userId" in m for m in data["items"])


async def test_list_json_of_an_empty_instance_has_an_empty_items_list(
    losant_server: FakeLosantServer,
) -> None:
    """`asyncmembers list | jq '.items[].email'` (the README's pipeline) met null: the
    key was left out when the instance had no members (an outside attack)."""
    result = await run(losant_server, "list", "--instance", IID)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["items"] == [] and data["count"] == 0


async def test_list_table(populated: FakeLosantServer) -> None:
    result = await run(populated, "list", "--instance", IID, "--format", "table")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for email in ("Ada@example.com", "bob@example.com", "carol@example.org"):
        assert email in out
    assert "3 members" in out
    assert out.index("Ada@example.com") < out.index("bob@example.com")


async def test_list_csv_sorted_and_filtered(populated: FakeLosantServer) -> None:
    result = await run(
        populated,
        "list",
        "--instance",
        IID,
        "--format",
        "csv",
        "--sort-field",
        "role",
        "--sort-direction",
        "desc",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(_output.MEMBER_COLUMNS)
    assert [(r["role"], r["email"]) for r in rows] == [
        ("view", "bob@example.com"),
        ("view", "carol@example.org"),
        ("admin", "Ada@example.com"),
    ]

    result = await run(populated, "list", "--instance", IID, "--filter", "*@EXAMPLE.com")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [m["email"] for m in data["items"]] == ["Ada@example.com", "bob@example.com"]
    assert data["filterField"] == "email"

    result = await run(
        populated, "list", "--instance", IID, "--filter-field", "role", "--filter", "adm?n"
    )
    assert [m["email"] for m in json.loads(result.stdout)["items"]] == ["Ada@example.com"]


async def test_list_csv_imports_back(populated: FakeLosantServer, tmp_path: Path) -> None:
    listed = await run(populated, "list", "--instance", IID, "--format", "csv")
    path = write(tmp_path / "members.csv", listed.stdout)
    result = await run(populated, "import", str(path), "--instance", OTHER_IID, "--no-progress")
    assert result.exit_code == 0, result.output
    assert emails(populated, OTHER_IID) == emails(populated, IID)


async def test_global_options_may_follow_the_command(populated: FakeLosantServer) -> None:
    result = await run(
        None, "list", "--instance", IID, "--url", populated.url, "--token", TOKEN, token=None
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 3


async def test_token_and_url_from_the_environment(populated: FakeLosantServer) -> None:
    result = await run(
        None,
        "list",
        "--instance",
        IID,
        token=None,
        env={"LOSANT_API_TOKEN": TOKEN, "LOSANT_API_URL": populated.url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["count"] == 3


async def test_an_option_beats_the_environment(populated: FakeLosantServer) -> None:
    result = await run(
        populated, "list", "--instance", IID, env={"LOSANT_API_TOKEN": "not-the-token"}
    )
    assert result.exit_code == 0, result.output


# -- add -------------------------------------------------------------------------------


async def test_add_by_email(losant_server: FakeLosantServer) -> None:
    result = await run(
        losant_server, "add", "--instance", IID, "--email", "ada@example.com", "--role", "Admin"
    )
    assert result.exit_code == 0, result.output
    assert "Added ada@example.com" in result.stdout
    [member] = losant_server.members(IID)
    assert (member["email"], member["role"]) == ("ada@example.com", "admin")


async def test_add_by_user_id(losant_server: FakeLosantServer) -> None:
    result = await run(losant_server, "add", "--instance", IID, "--user-id", UID, "--role", "view")
    assert result.exit_code == 0, result.output
    [member] = losant_server.members(IID)
    assert (member["userId"], member["role"]) == (UID, "view")


async def test_add_an_existing_member_is_not_an_error(losant_server: FakeLosantServer) -> None:
    losant_server.add_member(IID, email="ada@example.com", role="view")
    result = await run(
        losant_server, "add", "--instance", IID, "--email", "ADA@example.com", "--role", "view"
    )
    assert result.exit_code == 0, result.output
    assert "already a member" in result.stdout
    assert len(losant_server.members(IID)) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--role", "view"], "exactly one of --email or --user-id"),
        (["--email", "a@example.com", "--user-id", UID, "--role", "view"], "exactly one"),
        (["--email", "not-an-address", "--role", "view"], "--email"),
        (["--user-id", "123", "--role", "view"], "--user-id"),
        (["--email", "a@example.com", "--role", "owner"], "--role"),
        (["--email", "a@example.com"], "--role"),
    ],
)
async def test_add_usage_errors(
    losant_server: FakeLosantServer, args: list[str], expected: str
) -> None:
    result = await run(losant_server, "add", "--instance", IID, *args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert losant_server.members(IID) == []
    assert losant_server.stats.requests == 0


# -- import ----------------------------------------------------------------------------

CSV_OK = "email,role,team\nada@example.com,admin,Math\nbob@example.com,view,Ops\n"
JSONL_OK = (
    '{"email": "ada@example.com", "role": "admin"}\n' + f'{{"userId": "{UID}", "role": "view"}}\n'
)
JSON_OK = (
    '[{"email": "ada@example.com", "role": "admin"}, {"email": "bob@example.com", "role": "view"}]'
)


@pytest.mark.parametrize(
    ("name", "text", "extra"),
    [
        ("members.csv", CSV_OK, []),
        ("members.jsonl", JSONL_OK, []),
        ("members.json", JSON_OK, []),
        ("members.txt", CSV_OK, ["--format", "csv"]),
        ("members.data", JSONL_OK, ["--format", "JSONL"]),
    ],
)
async def test_import_file_formats(
    losant_server: FakeLosantServer, tmp_path: Path, name: str, text: str, extra: list[str]
) -> None:
    path = write(tmp_path / name, text)
    result = await run(losant_server, "import", str(path), "--instance", IID, *extra)
    assert result.exit_code == 0, result.output
    assert len(losant_server.members(IID)) == 2
    assert "Import summary" in result.stdout
    assert "Created" in result.stdout


@pytest.mark.parametrize("text", [CSV_OK, JSONL_OK, JSON_OK])
async def test_import_from_stdin(losant_server: FakeLosantServer, text: str) -> None:
    result = await run(losant_server, "import", "-", "--instance", IID, input=text.encode())
    assert result.exit_code == 0, result.output
    assert len(losant_server.members(IID)) == 2


async def test_import_with_failures_exits_1_and_writes_the_report(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    losant_server.add_member(IID, email="carol@example.com", role="view")
    path = write(
        tmp_path / "members.csv",
        "email,role,team\n"
        "ada@example.com,admin,Math\n"
        "broken@,view,Ops\n"
        "carol@example.com,view,Ops\n"
        "ADA@example.com,view,Math\n"
        "dave@example.com,owner,Ops\n",
    )
    report = tmp_path / "errors.csv"
    result = await run(
        losant_server, "import", str(path), "--instance", IID, "--errors", str(report)
    )
    assert result.exit_code == 1, result.output
    assert emails(losant_server) == ["ada@example.com", "carol@example.com"]
    rows = read_report(report)
    assert [(r["email"], r["team"], r["line"], r["error_type"], r["status"]) for r in rows] == [
        ("broken@", "Ops", "3", "ValidationError", ""),
        ("dave@example.com", "Ops", "6", "ValidationError", ""),
    ]
    assert "role must be one of admin, view" in rows[1]["message"]
    out = result.stdout
    assert "already a member" in out and "duplicate in input" in out
    # Failures by type, read from BulkResult.failures_by_type() (no labels parsed from text).
    assert re.search(r"Failed\s+2\n\s+ValidationError\s+2\n", out), out
    assert "2 failed rows written to" in result.stderr

    # The report is a member file: fixed, it imports as is.
    fixed = report.read_text(encoding="utf-8").replace("broken@", "broken@example.com")
    fixed = fixed.replace("owner", "view")
    again = await run(losant_server, "import", str(write(report, fixed)), "--instance", IID)
    assert again.exit_code == 0, again.output
    assert len(losant_server.members(IID)) == 4


async def test_import_dry_run_adds_nobody(losant_server: FakeLosantServer, tmp_path: Path) -> None:
    path = write(tmp_path / "members.csv", CSV_OK)
    result = await run(losant_server, "import", str(path), "--instance", IID, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout and "Would be created" in result.stdout
    assert losant_server.members(IID) == []


async def test_import_journal_resumes(losant_server: FakeLosantServer, tmp_path: Path) -> None:
    path = write(tmp_path / "members.csv", CSV_OK)
    journal = tmp_path / "import.journal"
    first = await run(
        losant_server, "import", str(path), "--instance", IID, "--journal", str(journal)
    )
    assert first.exit_code == 0, first.output
    second = await run(
        losant_server, "import", str(path), "--instance", IID, "--journal", str(journal)
    )
    assert second.exit_code == 0, second.output
    assert "done in an earlier run" in second.stdout
    assert len(losant_server.members(IID)) == 2

    other = await run(
        losant_server, "import", str(path), "--instance", OTHER_IID, "--journal", str(journal)
    )
    assert other.exit_code == 2
    assert "journal" in one_error_line(other)


async def test_import_progress_lines_when_not_a_terminal(
    losant_server: FakeLosantServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_output._PlainProgress, "interval", 0.001)
    losant_server.faults = Faults(latency=0.005)
    rows = "".join(f"user{i}@example.com,view\n" for i in range(40))
    path = write(tmp_path / "members.csv", "email,role\n" + rows)
    result = await run(losant_server, "import", str(path), "--instance", IID, "--concurrency", "2")
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("import: ")]
    assert progress, result.stderr
    assert all("/40 rows" in line for line in progress)

    quiet = await run(losant_server, "import", str(path), "--instance", OTHER_IID, "--no-progress")
    assert quiet.exit_code == 0
    assert "import: " not in quiet.stderr


async def test_import_progress_bar_on_a_terminal(
    losant_server: FakeLosantServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    def terminal_console() -> Console:
        import sys

        return Console(file=sys.stderr, force_terminal=True, width=100)

    monkeypatch.setattr(_output, "is_terminal", lambda stream=None: True)
    monkeypatch.setattr(_output, "err_console", terminal_console)
    path = write(tmp_path / "members.csv", CSV_OK + "broken@,view,x\n")
    result = await run(losant_server, "import", str(path), "--instance", IID)
    assert result.exit_code == 1, result.output
    assert "Importing" in result.stderr and "3/3" in result.stderr
    assert TOKEN not in result.output


# -- exit statuses ---------------------------------------------------------------------


@pytest.fixture
def members_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "members.csv", CSV_OK)


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["add", "--email", "ada@example.com", "--role", "view"],
        ["import", "MEMBERS"],
    ],
)
async def test_exit_2_without_a_token(
    losant_server: FakeLosantServer, members_csv: Path, command: list[str]
) -> None:
    args = [str(members_csv) if a == "MEMBERS" else a for a in command]
    result = await run(losant_server, *args, "--instance", IID, token=None)
    assert result.exit_code == 2
    assert "LOSANT_API_TOKEN" in one_error_line(result)
    assert losant_server.stats.requests == 0


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["add", "--email", "ada@example.com", "--role", "view"],
        ["import", "MEMBERS"],
    ],
)
@pytest.mark.parametrize("bad_id", ["575ec8687ae143cd83dc4a9", "575ec8687ae143cd83dc4a9z", "../x"])
async def test_exit_2_for_a_bad_instance_id(
    losant_server: FakeLosantServer, members_csv: Path, command: list[str], bad_id: str
) -> None:
    args = [str(members_csv) if a == "MEMBERS" else a for a in command]
    result = await run(losant_server, *args, "--instance", bad_id)
    assert result.exit_code == 2
    assert "--instance" in result.stderr and "ObjectId" in result.stderr
    assert losant_server.stats.requests == 0


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "no such file"),
        ("directory", "directory"),
        ("extension", "cannot tell the format"),
        ("no-role-column", "role"),
        ("not-json", "members.json"),
    ],
)
async def test_exit_2_for_an_unreadable_file(
    losant_server: FakeLosantServer, tmp_path: Path, setup: str, expected: str
) -> None:
    (tmp_path / "folder.csv").mkdir()
    paths = {
        "missing": tmp_path / "nope.csv",
        "directory": tmp_path / "folder.csv",
        "extension": write(tmp_path / "members.xlsx", CSV_OK),
        "no-role-column": write(tmp_path / "members.csv", "email,team\na@example.com,x\n"),
        "not-json": write(tmp_path / "members.json", '{"email": "a@example.com"}'),
    }
    result = await run(losant_server, "import", str(paths[setup]), "--instance", IID)
    assert result.exit_code == 2
    assert expected in one_error_line(result)
    assert losant_server.members(IID) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "xml"],
        ["--concurrency", "0"],
        ["--max-rate", "0"],
        ["--max-rate", "fast"],
        ["--errors", "-"],
        ["--journal", "-"],
    ],
)
async def test_exit_2_for_bad_import_options(
    losant_server: FakeLosantServer, members_csv: Path, args: list[str]
) -> None:
    result = await run(losant_server, "import", str(members_csv), "--instance", IID, *args)
    assert result.exit_code == 2
    assert losant_server.stats.requests == 0


async def test_exit_2_for_an_unwritable_error_report(
    losant_server: FakeLosantServer, members_csv: Path, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-dir" / "errors.csv"
    result = await run(
        losant_server, "import", str(members_csv), "--instance", IID, "--errors", str(target)
    )
    assert result.exit_code == 2
    assert "--errors" in one_error_line(result)
    assert losant_server.members(IID) == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [("ftp://example.com", "http(s) URL"), ("http://example.com", "--allow-insecure-http")],
)
async def test_exit_2_for_a_bad_url(url: str, expected: str) -> None:
    result = await run(None, "--url", url, "list", "--instance", IID)
    assert result.exit_code == 2
    assert expected in one_error_line(result)


@pytest.mark.parametrize(
    ("token", "instance", "status"),
    [
        ("wrong-token", IID, "401"),
        (NO_SCOPE_TOKEN, IID, "403"),
        (TOKEN, MISSING_IID, "404"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["add", "--email", "ada@example.com", "--role", "view"],
        ["import", "MEMBERS"],
    ],
)
async def test_exit_3_for_fatal_api_errors(
    losant_server: FakeLosantServer,
    members_csv: Path,
    command: list[str],
    token: str,
    instance: str,
    status: str,
) -> None:
    args = [str(members_csv) if a == "MEMBERS" else a for a in command]
    result = await run(losant_server, *args, "--instance", instance, token=token)
    assert result.exit_code == 3, result.output
    assert status in one_error_line(result)
    assert losant_server.members(IID) == []


async def test_exit_3_when_the_token_may_read_but_not_add(
    losant_server: FakeLosantServer, members_csv: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "import.journal"
    result = await run(
        losant_server,
        "import",
        str(members_csv),
        "--instance",
        IID,
        "--journal",
        str(journal),
        token=READ_TOKEN,
    )
    assert result.exit_code == 3, result.output
    assert "403" in one_error_line(result)
    assert losant_server.members(IID) == []


async def test_exit_1_when_the_server_keeps_failing(
    losant_server: FakeLosantServer, members_csv: Path
) -> None:
    losant_server.faults = Faults(error_rate=1.0)
    result = await run(losant_server, "list", "--instance", IID)
    assert result.exit_code == 1
    assert "gave up after" in one_error_line(result)


async def test_exit_4_when_nothing_answers(members_csv: Path, tmp_path: Path) -> None:
    # Issue 13: "server unreachable" was rc 1, the same as "some rows failed".
    async with FakeLosantServer() as server:
        url = server.url  # a port that was just free: nothing listens there now
    result = await run(None, "--url", url, "list", "--instance", IID)
    assert result.exit_code == 4
    assert "connect" in one_error_line(result)
    summary = tmp_path / "summary.json"
    result = await run(
        None,
        "--url",
        url,
        "import",
        str(members_csv),
        "--instance",
        IID,
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 4, result.output
    assert "connect" in one_error_line(result)
    data = json.loads(summary.read_text())
    assert data["exit_status"] == 4 and data["status"] == "stopped"
    assert "connect" in data["error"]


# -- the token is never shown ------------------------------------------------------------


async def test_the_token_never_appears_in_any_output(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    losant_server.faults = Faults(error_rate=0.3, drop_after_commit_rate=0.1)
    # A member file that mentions the token nowhere, so any appearance is a leak.
    path = write(
        tmp_path / "members.csv",
        "email,role\n" + "".join(f"u{i}@example.com,view\n" for i in range(30)) + "bad@,view\n",
    )
    report = tmp_path / "errors.csv"
    results: list[Result] = []
    for verbose in ("-v", "-vv"):
        results.append(
            await run(
                losant_server,
                verbose,
                "import",
                str(path),
                "--instance",
                IID,
                "--errors",
                str(report),
            )
        )
        assert TOKEN not in report.read_text(encoding="utf-8")
    assert any("retrying" in r.stderr for r in results)  # -v logged something
    results += [
        await run(losant_server, "-vv", "list", "--instance", IID),
        await run(losant_server, "-vv", "list", "--instance", MISSING_IID),
        await run(losant_server, "-v", "add", "--instance", IID, "--email", "x@", "--role", "view"),
        await run(losant_server, "-v", "list", "--instance", "bad"),
        await run(losant_server, "-v", "list", "--instance", IID, "--bogus"),
        await run(losant_server, "list", "--instance", IID, "--token", TOKEN, token=None),
        await run(None, "--url", "http://example.com", "-vv", "list", "--instance", IID),
        await run(losant_server, "--help", env={"LOSANT_API_TOKEN": TOKEN}, token=None),
        await run(losant_server, "import", "--help", env={"LOSANT_API_TOKEN": TOKEN}, token=None),
        await run(losant_server, "--token", token=None),
    ]
    wrong = "wrong-" + TOKEN
    failed = await run(losant_server, "-vv", "list", "--instance", IID, token=wrong)
    assert failed.exit_code == 3
    assert wrong not in failed.output
    for result in results:
        assert TOKEN not in result.output, result.output
        assert "Traceback" not in result.output


async def test_version_and_help() -> None:
    result = await run(None, "--version", token=None)
    assert result.exit_code == 0 and "asyncmembers" in result.stdout
    for command in ("list", "add", "import", "fake-server", "demo"):
        help_result = await run(None, command, "--help", token=None)
        assert help_result.exit_code == 0, command


def test_cli_error_classes_carry_each_status() -> None:
    from asyncmembers.cli._common import cli_error

    assert [cli_error("x", code).exit_code for code in (1, 2, 3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", "10.1.2.3"], "loopback"),
        (["--error-rate", "0.8", "--drop-after-commit-rate", "0.5"], "at most 1"),
        (["--error-rate", "2"], "--error-rate"),
        (["--instance", "nope"], "--instance"),
        (["--port", "70000"], "--port"),
    ],
)
def test_fake_server_usage_errors(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(cli, ["fake-server", *args], catch_exceptions=False)
    assert result.exit_code == 2
    assert expected in result.stderr


@pytest.mark.parametrize("complete", [True, False])
async def test_a_progress_bar_cut_short_is_not_drawn_as_finished(complete: bool) -> None:
    """SIGINT 10% into an import left "✓ Importing ━━━ 192/192" (an outside attack): the
    total was set to the rows done and the bar drawn finished."""
    import io

    from rich.console import Console

    from asyncmembers.bulk import Progress
    from asyncmembers.cli._output import _RichProgress

    live = Progress(total=2000)
    live.done = 192
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    bar = _RichProgress(live, console, "Importing")
    bar.start()
    bar.stop(complete=complete)
    text = buffer.getvalue()
    if complete:
        assert "✓" in text and "192/192" in text
    else:
        assert "✓" not in text and "192/2,000" in text and "Importing (stopped)" in text
