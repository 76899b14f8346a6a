"""The membership lifecycle on the command line: sync, remove, import --update-roles,
add --update-role; in process, against the embedded server over real loopback HTTP."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from asyncmembers.testing import FakeLosantServer, Faults
from tests.test_cli import (  # the same runner and fixtures as the other CLI tests
    IID,
    MISSING_IID,
    READ_TOKEN,
    emails,
    losant_server_instances,
    losant_server_tokens,
    one_error_line,
    read_report,
    run,
    write,
)

__all__ = ["losant_server_instances", "losant_server_tokens"]

UID = "5f0c1a2b3c4d5e6f7a8b9c0d"


def roles(server: FakeLosantServer, iid: str = IID) -> dict[str, str]:
    return {m["email"].lower(): m["role"] for m in server.members(iid) if "email" in m}


def changes(server: FakeLosantServer) -> int:
    m = server.stats.by_method
    return m["POST"] + m["PATCH"] + m["DELETE"]


@pytest.fixture
def ten(losant_server: FakeLosantServer) -> FakeLosantServer:
    """An instance of ten members: u0..u4 view, u5..u9 admin."""
    for i in range(10):
        losant_server.add_member(IID, email=f"u{i}@example.com", role="view" if i < 5 else "admin")
    return losant_server


def desired(tmp_path: Path) -> Path:
    # u0 unchanged, u1 view->admin, u2..u8 unchanged, u9 missing (leaver), new1 added.
    rows = ["email,role", "u0@example.com,view", "U1@Example.com,admin"]
    rows += [f"u{i}@example.com,{'view' if i < 5 else 'admin'}" for i in range(2, 9)]
    rows += ["new1@example.com,view"]
    return write(tmp_path / "desired.csv", "\n".join(rows) + "\n")


# -- sync --------------------------------------------------------------------------------


async def test_sync_dry_run_prints_the_plan_and_sends_no_change(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    before = ten.members(IID)
    summary = tmp_path / "summary.json"
    result = await run(
        ten,
        "sync",
        str(desired(tmp_path)),
        "--instance",
        IID,
        "--prune",
        "--dry-run",
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Sync plan" in out
    plan = dict(
        re.split(r"\s{2,}", line.strip())
        for line in out.splitlines()
        if re.match(r"\s+(Current members|To add|To change role|To remove|Unchanged)\s", line)
    )
    assert plan == {
        "Current members": "10",
        "To add": "1",
        "To change role": "1",
        "To remove": "1",
        "Unchanged": "8",
    }
    assert "new1@example.com -> view" in out and "U1@Example.com -> admin" in out
    assert "u9@example.com" in out  # the first rows to remove are shown
    assert "Dry run: nothing was changed" in out
    assert changes(ten) == 0 and ten.stats.by_method["GET"] == 1
    assert ten.members(IID) == before
    figures = json.loads(summary.read_text())
    assert figures["command"] == "sync" and figures["dry_run"] is True
    assert (figures["added"], figures["updated"], figures["removed"]) == (1, 1, 1)


async def test_sync_with_prune_makes_the_instance_equal_the_list(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    result = await run(
        ten,
        "sync",
        str(desired(tmp_path)),
        "--instance",
        IID,
        "--prune",
        "--no-progress",
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    # The plan is printed before the summary (and before any change: on_plan runs first).
    assert result.stdout.index("Sync plan") < result.stdout.index("Sync summary")
    assert roles(ten) == {
        **{f"u{i}@example.com": "view" if i < 5 else "admin" for i in range(9)},
        "u1@example.com": "admin",
        "new1@example.com": "view",
    }
    m = ten.stats.by_method
    assert (m["POST"], m["PATCH"], m["DELETE"]) == (1, 1, 1)
    figures = json.loads(summary.read_text())
    assert figures["exit_status"] == 0 and figures["status"] == "complete"
    assert figures["total"] == 11
    assert (figures["added"], figures["updated"], figures["removed"], figures["unchanged"]) == (
        1,
        1,
        1,
        8,
    )


async def test_sync_without_prune_keeps_the_others(ten: FakeLosantServer, tmp_path: Path) -> None:
    result = await run(ten, "sync", str(desired(tmp_path)), "--instance", IID, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "u9@example.com" in roles(ten) and "new1@example.com" in roles(ten)
    assert ten.stats.by_method["DELETE"] == 0


async def test_sync_removal_guard_refuses_with_the_option_to_allow_it(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    few = write(tmp_path / "few.csv", "email,role\nu0@example.com,view\nu1@example.com,view\n")
    result = await run(ten, "sync", str(few), "--instance", IID, "--prune", "--no-progress")
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "remove 8 of the instance's 10 members" in line
    assert "--max-removals 8" in line and "max_removals=" not in line
    assert "Sync plan" in result.stdout  # the plan was shown, then refused
    assert changes(ten) == 0 and len(ten.members(IID)) == 10

    allowed = await run(
        ten, "sync", str(few), "--instance", IID, "--prune", "--max-removals", "8", "--no-progress"
    )
    assert allowed.exit_code == 0, allowed.output
    assert sorted(roles(ten)) == ["u0@example.com", "u1@example.com"]


async def test_sync_max_removals_needs_prune(ten: FakeLosantServer, tmp_path: Path) -> None:
    result = await run(
        ten, "sync", str(desired(tmp_path)), "--instance", IID, "--max-removals", "3"
    )
    assert result.exit_code == 2
    assert "--max-removals only applies with --prune" in result.output
    assert ten.stats.requests == 0


async def test_sync_invalid_rows_go_to_the_report_and_exit_1(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "d.csv",
        "email,role,team\n"
        + "".join(f"u{i}@example.com,{'view' if i < 5 else 'admin'},x\n" for i in range(10))
        + "bad-address,view,y\nfresh@example.com,owner,z\n",
    )
    report = tmp_path / "errors.csv"
    result = await run(
        ten,
        "sync",
        str(path),
        "--instance",
        IID,
        "--prune",
        "--errors",
        str(report),
        "--no-progress",
    )
    assert result.exit_code == 1, result.output
    rows = read_report(report)
    assert [r["line"] for r in rows] == ["12", "13"]
    assert {r["team"] for r in rows} == {"y", "z"}
    assert changes(ten) == 0  # everything else was equal


async def test_sync_prune_never_removes_a_member_an_unreadable_row_may_mean(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    """A cp1252 file read as UTF-8: the row for zoë, a member, cannot be read, and names
    nobody clearly. Before, the prune removed zoë (an outside attack); now no member is
    removed, the plan says how many were held back, and the run exits 1."""
    ten.add_member(IID, email="zoë@example.com", role="view")
    rows = "email,role\n" + "".join(
        f"u{i}@example.com,{'view' if i < 5 else 'admin'}\n" for i in range(9)
    )
    path = tmp_path / "cp1252.csv"
    path.write_bytes((rows + "zoë@example.com,view\n").encode("cp1252"))
    result = await run(
        ten, "sync", str(path), "--instance", IID, "--prune", "--max-removals", "5", "--no-progress"
    )
    assert result.exit_code == 1, result.output
    assert "zoë@example.com" in roles(ten) and "u9@example.com" in roles(ten)
    assert ten.stats.by_method["DELETE"] == 0
    # u9 (in no row) and zoë (whose row could not be read) are held back
    assert re.search(r"Not removed \(see errors\)\s+2\b", result.stdout), result.stdout
    assert re.search(r"Invalid rows\s+1\b", result.stdout), result.stdout


def test_a_failed_removal_is_reported_but_never_re_added() -> None:
    # A member a sync failed to remove goes to the report's extra column only: importing
    # or syncing the report cannot add it back (its email/userId/role cells are empty).
    from asyncmembers.cli._syncing import removal_report_row
    from asyncmembers.errors import ServerError
    from asyncmembers.report import ErrorReportWriter

    out = io.StringIO()
    member = {"email": "gone@example.com", "userId": UID, "role": "view"}
    with ErrorReportWriter(out, columns=("email", "role", "team")) as report:
        report.write(removal_report_row(member), ServerError("503: try later", status=503))
    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert (row["email"], row["role"], row["status"]) == ("", "", "503")
    assert json.loads(row["extra"]) == {"action": "remove", "member": member}


async def test_sync_journal_is_refused_when_it_is_the_input(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    path = desired(tmp_path)
    result = await run(ten, "sync", str(path), "--instance", IID, "--prune", "--journal", str(path))
    assert result.exit_code == 2, result.output
    assert "journal" in one_error_line(result)
    assert ten.stats.requests == 0  # refused before the first request


async def test_sync_unknown_instance_exits_3(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    result = await run(losant_server, "sync", str(desired(tmp_path)), "--instance", MISSING_IID)
    assert result.exit_code == 3, result.output
    assert changes(losant_server) == 0


async def test_sync_progress_lines_name_the_sync_counts(
    ten: FakeLosantServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncmembers.cli import _output

    monkeypatch.setattr(_output._PlainProgress, "interval", 0.001)
    ten.faults = Faults(latency=0.05)
    result = await run(ten, "sync", str(desired(tmp_path)), "--instance", IID, "--prune")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("sync: ")]
    assert lines, result.stderr
    assert all("added" in line and "removed" in line and "unchanged" in line for line in lines)


# -- import --update-roles / add --update-role -----------------------------------------


async def test_import_update_roles(ten: FakeLosantServer, tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", "email,role\nu0@example.com,admin\nu1@example.com,view\n")
    plain = await run(ten, "import", str(path), "--instance", IID, "--no-progress")
    assert plain.exit_code == 0, plain.output
    assert "already a member with role view" in plain.stdout
    assert roles(ten)["u0@example.com"] == "view" and ten.stats.by_method["PATCH"] == 0

    updated = await run(
        ten, "import", str(path), "--instance", IID, "--update-roles", "--no-progress"
    )
    assert updated.exit_code == 0, updated.output
    assert re.search(r"Role changed\s+1\b", updated.stdout), updated.stdout
    assert roles(ten)["u0@example.com"] == "admin" and ten.stats.by_method["PATCH"] == 1


async def test_add_an_existing_member_with_another_role_says_so(ten: FakeLosantServer) -> None:
    result = await run(
        ten, "add", "--instance", IID, "--email", "u0@example.com", "--role", "admin"
    )
    assert result.exit_code == 0, result.output
    assert "already a member" in result.stdout and "with role view" in result.stdout
    assert "--update-role" in result.stdout
    assert roles(ten)["u0@example.com"] == "view"

    changed = await run(
        ten,
        "add",
        "--instance",
        IID,
        "--email",
        "U0@example.com",
        "--role",
        "admin",
        "--update-role",
    )
    assert changed.exit_code == 0, changed.output
    assert "Changed the role" in changed.stdout
    assert roles(ten)["u0@example.com"] == "admin"

    same = await run(ten, "add", "--instance", IID, "--email", "u0@example.com", "--role", "admin")
    assert "with role admin; nothing to do" in same.stdout


# -- remove ------------------------------------------------------------------------------


async def test_remove_by_email(ten: FakeLosantServer) -> None:
    result = await run(ten, "remove", "--instance", IID, "--email", "U3@example.com")
    assert result.exit_code == 0, result.output
    assert "Removed U3@example.com" in result.stdout
    assert "u3@example.com" not in roles(ten) and len(ten.members(IID)) == 9


async def test_remove_by_email_of_a_non_member_exits_1(ten: FakeLosantServer) -> None:
    result = await run(ten, "remove", "--instance", IID, "--email", "nobody@example.com")
    assert result.exit_code == 1
    assert "nobody@example.com is not a member" in one_error_line(result)
    assert changes(ten) == 0


async def test_remove_by_user_id(ten: FakeLosantServer) -> None:
    uid = next(m["userId"] for m in ten.members(IID) if m["email"] == "u4@example.com")
    result = await run(ten, "remove", "--instance", IID, "--user-id", uid)
    assert result.exit_code == 0, result.output
    assert "u4@example.com" not in roles(ten)
    again = await run(ten, "remove", "--instance", IID, "--user-id", uid)
    assert again.exit_code == 1
    assert f"user {uid} is not a member" in one_error_line(again)


async def test_remove_by_user_id_in_an_unknown_instance_exits_3(
    losant_server: FakeLosantServer,
) -> None:
    result = await run(losant_server, "remove", "--instance", MISSING_IID, "--user-id", UID)
    assert result.exit_code == 3, result.output


async def test_remove_usage(ten: FakeLosantServer, tmp_path: Path) -> None:
    for args in ([], ["--email", "a@example.com", "--user-id", UID]):
        result = await run(ten, "remove", "--instance", IID, *args)
        assert result.exit_code == 2
        assert "exactly one of --email, --user-id or FILE" in result.output
    assert ten.stats.requests == 0


async def test_remove_file(ten: FakeLosantServer, tmp_path: Path) -> None:
    uid = next(m["userId"] for m in ten.members(IID) if m["email"] == "u7@example.com")
    path = write(
        tmp_path / "leavers.csv",
        "email,userId,team\n"
        "u1@example.com,,a\n"
        f",{uid},b\n"
        "nobody@example.com,,c\n"
        "not-an-address,,d\n"
        "U1@EXAMPLE.COM,,e\n",
    )
    report = tmp_path / "errors.csv"
    summary = tmp_path / "summary.json"
    result = await run(
        ten,
        "remove",
        str(path),
        "--instance",
        IID,
        "--errors",
        str(report),
        "--summary-json",
        str(summary),
        "--no-progress",
    )
    assert result.exit_code == 1, result.output  # the invalid row failed
    assert "Remove summary" in result.stdout
    assert sorted(roles(ten)) == sorted(f"u{i}@example.com" for i in range(10) if i not in (1, 7))
    assert ten.stats.by_method["DELETE"] == 2
    figures = json.loads(summary.read_text())
    assert figures["command"] == "remove"
    assert (figures["total"], figures["removed"], figures["skipped"], figures["failed"]) == (
        5,
        2,
        2,
        1,
    )
    assert [r["line"] for r in read_report(report)] == ["5"]

    again = await run(ten, "remove", str(path), "--instance", IID, "--no-progress")
    # Nothing left to do: the one read of the members shows none of them (no DELETE is
    # sent); only the invalid row fails again. The skips are counted by reason.
    assert again.exit_code == 1, again.output
    assert re.search(r"Removed\s+0\b", again.stdout) and re.search(
        r"Skipped\s+4\b\s+not a member\s+4\b", again.stdout
    ), again.stdout
    assert ten.stats.by_method["DELETE"] == 2  # still the first run's two
    assert len(ten.members(IID)) == 8


async def test_remove_file_with_a_journal_skips_what_an_earlier_run_removed(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    path = write(tmp_path / "l.csv", "email,role\nu1@example.com,owner\nu2@example.com,\n")
    journal = tmp_path / "remove.journal"
    args = ["remove", str(path), "--instance", IID, "--journal", str(journal), "--no-progress"]
    first = await run(ten, *args)
    assert first.exit_code == 0, first.output  # the role cells (even "owner") are ignored
    assert sorted(roles(ten)) == sorted(f"u{i}@example.com" for i in range(10) if i not in (1, 2))
    again = await run(ten, *args)
    assert again.exit_code == 0, again.output
    assert re.search(r"done in an earlier run\s+2\b", again.stdout), again.stdout
    assert ten.stats.by_method["DELETE"] == 2
    refused = await run(ten, "remove", str(path), "--instance", IID, "--journal", str(path))
    assert refused.exit_code == 2 and "same file" in one_error_line(refused)


async def test_remove_file_dry_run_sends_no_delete(ten: FakeLosantServer, tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", "email\nu1@example.com\nu2@example.com\n")
    result = await run(ten, "remove", str(path), "--instance", IID, "--dry-run", "--no-progress")
    assert result.exit_code == 0, result.output
    assert re.search(r"Would be removed\s+2\b", result.stdout), result.stdout
    assert changes(ten) == 0 and len(ten.members(IID)) == 10


async def test_remove_file_with_a_read_only_token_stops_with_exit_3(
    ten: FakeLosantServer, tmp_path: Path
) -> None:
    path = write(tmp_path / "l.csv", "email\nu1@example.com\nu2@example.com\n")
    result = await run(ten, "remove", str(path), "--instance", IID, token=READ_TOKEN)
    assert result.exit_code == 3, result.output
    assert len(ten.members(IID)) == 10


async def test_remove_file_unknown_instance_exits_3_before_any_delete(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    path = write(tmp_path / "l.csv", f"userId\n{UID}\n")
    result = await run(losant_server, "remove", str(path), "--instance", MISSING_IID)
    assert result.exit_code == 3, result.output
    assert losant_server.stats.by_method["DELETE"] == 0


async def test_remove_file_under_faults_removes_each_listed_member_once(
    losant_server: FakeLosantServer, tmp_path: Path
) -> None:
    losant_server.add_members(IID, ({"email": f"m{i}@example.com"} for i in range(60)))
    path = write(
        tmp_path / "l.csv", "email\n" + "".join(f"m{i}@example.com\n" for i in range(0, 60, 2))
    )
    losant_server.faults = Faults(
        error_rate=0.1, drop_after_commit_rate=0.1, drop_before_commit_rate=0.05
    )
    result = await run(losant_server, "remove", str(path), "--instance", IID, "--no-progress")
    losant_server.faults = Faults()
    assert result.exit_code == 0, result.output
    assert emails(losant_server) == sorted(f"m{i}@example.com" for i in range(1, 60, 2))
    assert re.search(r"Removed\s+30\b", result.stdout), result.stdout


@pytest.mark.parametrize("other", ["input", "--errors", "--summary-json"])
async def test_import_journal_may_not_be_another_file_of_the_run(
    losant_server: FakeLosantServer, tmp_path: Path, other: str
) -> None:
    path = write(tmp_path / "m.csv", "email,role\na@example.com,view\n")
    target = path if other == "input" else tmp_path / "same.file"
    if other != "input":  # an earlier run's journal: it must survive the refusal
        target.write_text("precious\n")
    extra = [] if other == "input" else [other, str(target)]
    result = await run(
        losant_server, "import", str(path), "--instance", IID, "--journal", str(target), *extra
    )
    assert result.exit_code == 2, result.output
    assert "journal" in one_error_line(result)
    assert losant_server.stats.by_method["POST"] == 0
    assert path.read_text() == "email,role\na@example.com,view\n"
    if other != "input":
        assert target.read_text() == "precious\n"
