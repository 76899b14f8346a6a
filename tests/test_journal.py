"""Journals cannot lie: self-identifying, never partially trusted, exclusive for a run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import asyncmembers as am
from asyncmembers.bulk import check_journal_path
from asyncmembers.bulk._journal import Journal
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "575ec8687ae143cd83dc4a98"
TOKEN = "journal-secret-token"


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID, OTHER_IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url) as c:
        yield c


def rows(n: int, tag: str = "j") -> list[dict[str, str]]:
    return [{"email": f"{tag}{i}@example.com", "role": "view"} for i in range(n)]


async def test_a_damaged_header_of_another_instance_is_refused(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    """The reported case: 20 rows "done in an earlier run", the instance holding none."""
    journal = tmp_path / "other.journal"
    await am.bulk_import(client, instanceId=OTHER_IID, members=rows(20), journal=journal)
    data = bytearray(journal.read_bytes())
    data[5] ^= 0x01  # one byte of the header flipped
    journal.write_bytes(bytes(data))
    with pytest.raises(am.ValidationError) as info:
        await am.bulk_import(client, instanceId=IID, members=rows(20), journal=journal)
    assert str(journal) in str(info.value) and "not used" in str(info.value)
    assert info.value.field == "journal"
    assert server.members(IID) == []
    assert journal.read_bytes() == bytes(data)  # not written to either


def test_every_single_byte_flip_of_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    j = Journal(path, OTHER_IID)
    j.record(0, ("e:a@example.com",), "created")
    j.close()
    original = path.read_bytes()
    header_length = original.index(b"\n") + 1
    for position in range(header_length):
        for flip in (0x01, 0x20):
            damaged = bytearray(original)
            damaged[position] ^= flip
            path.write_bytes(bytes(damaged))
            for instance in (IID, OTHER_IID):
                error = _refusal(path, instance)
                if error is not None:
                    assert str(path) in error
                    continue
                # Accepted only when the flip left the header meaning the same thing:
                # a letter's case in the instance id (ids compare case-insensitively).
                assert instance == OTHER_IID, (position, bytes(damaged[:header_length]))
                assert chr(damaged[position]).lower() == chr(original[position]), position


def _refusal(path: Path, instance: str) -> str | None:
    """The refusal's message, or None when the journal was accepted."""
    try:
        Journal(path, instance).close()
    except am.ValidationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"email,role\nann@example.com,view\n", "not an asyncmembers journal header"),
        (
            b'{"row":0,"key":"e:a@example.com","outcome":"created"}\n',
            "not an asyncmembers journal header",
        ),
        (
            b'{"asyncmembers_journal":99,"instanceId":"' + IID.encode() + b'"}\n',
            "unknown journal format version",
        ),
        (
            b'{"asyncmembers_journal":2,"instanceId":"' + IID.encode() + b'","mode":"sync"}\n',
            "sync run",
        ),
        (b"\x00\xff\xfe\n", "not an asyncmembers journal header"),
    ],
    ids=["csv", "no-header", "version", "mode", "binary"],
)
async def test_a_file_that_is_not_this_runs_journal_is_refused_and_left_alone(
    client: am.Client, server: FakeLosantServer, tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "existing.csv"
    path.write_bytes(content)
    with pytest.raises(am.ValidationError, match=problem):
        await am.bulk_import(client, instanceId=IID, members=rows(3), journal=path)
    assert path.read_bytes() == content  # nothing appended to the user's file
    assert server.stats.requests == 0  # refused before anything was sent


async def test_a_journal_that_is_the_input_or_the_report_is_refused(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text("email,role\nann@example.com,view\n")
    report = tmp_path / "errors.csv"
    for journal, protect in (
        (members, [members, report]),
        (tmp_path / "." / "members.csv", [members]),  # another spelling of the same file
        (report, [members, report]),  # not created yet: compared by path
    ):
        with pytest.raises(am.ValidationError, match="is the same file as"):
            await am.bulk_import(
                client, instanceId=IID, members=rows(3), journal=journal, protect=protect
            )
        with pytest.raises(am.ValidationError, match="is the same file as"):
            check_journal_path(journal, protect)
    assert members.read_text() == "email,role\nann@example.com,view\n"
    assert not report.exists()
    assert server.stats.requests == 0
    assert check_journal_path(tmp_path / "ok.journal", [members, None]) == str(
        tmp_path / "ok.journal"
    )


async def test_two_runs_cannot_share_one_journal_at_once(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    """The reported case: 402 + 1,257 "created" for 1,500 rows when two runs shared one."""
    server.faults = Faults(latency=0.02)
    journal = tmp_path / "shared.journal"
    started = asyncio.Event()
    first = asyncio.create_task(
        am.bulk_import(
            client,
            instanceId=IID,
            members=rows(200),
            journal=journal,
            concurrency=4,
            on_outcome=lambda o: started.set(),
        )
    )
    await started.wait()
    with pytest.raises(am.ValidationError, match="in use by another run"):
        await am.bulk_import(client, instanceId=IID, members=rows(200), journal=journal)
    result = await first
    assert result.created == 200
    # Once the first run has ended, the lock is free: a re-run resumes from it.
    server.faults = Faults()
    again = await am.bulk_import(client, instanceId=IID, members=rows(200), journal=journal)
    assert again.skipped_by_reason == {"done in an earlier run": 200}
    assert server.stats.posts_applied == 200


def test_a_torn_header_is_a_new_journal_but_a_torn_row_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    j = Journal(path, IID)
    j.record(0, ("e:a@example.com",), "created")
    j.record(1, ("e:b@example.com",), "created")
    j.close()
    data = path.read_bytes()
    path.write_bytes(data[:-9])  # the last row torn
    j = Journal(path, IID)
    assert "e:a@example.com" in j.done and "e:b@example.com" not in j.done
    j.close()
    path.write_bytes(data[:20])  # killed while writing the header: nothing was recorded
    j = Journal(path, IID)
    assert len(j.done) == 0
    j.close()
    assert path.read_bytes().startswith(b'{"asyncmembers_journal":2')


def test_a_journal_from_version_0_1_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "old.journal"
    path.write_text(
        f'{{"asyncmembers_journal":1,"instanceId":"{IID}"}}\n'
        '{"row":0,"key":"e:old@example.com","outcome":"created"}\n'
    )
    j = Journal(path, IID)
    assert "e:old@example.com" in j.done
    j.close()


# -- a journal records the role each row was finished with (found by an outside attack) ----


async def test_a_role_the_last_run_skipped_is_changed_by_a_rerun_with_update_roles(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    """Before, the row was "done in an earlier run" and ann stayed view."""
    server.add_member(IID, email="ann@example.com", role="view")
    journal = tmp_path / "j.journal"
    desired = [{"email": "ann@example.com", "role": "admin"}, *rows(2)]
    first = await am.bulk_import(client, instanceId=IID, members=desired, journal=journal)
    assert (first.created, first.skipped) == (2, 1)
    again = await am.bulk_import(
        client, instanceId=IID, members=desired, journal=journal, update_roles=True
    )
    assert (again.updated, again.skipped, again.skipped_by_reason) == (
        1,
        2,
        {"done in an earlier run": 2},
    )
    roles = {m["email"]: m["role"] for m in server.members(IID)}
    assert roles["ann@example.com"] == "admin"


async def test_a_row_whose_role_was_edited_since_the_last_run_is_sent_again(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    journal = tmp_path / "j.journal"
    await am.bulk_import(client, instanceId=IID, members=rows(3), journal=journal)
    edited = [*rows(3)]
    edited[1] = {**edited[1], "role": "admin"}
    again = await am.bulk_import(
        client, instanceId=IID, members=edited, journal=journal, update_roles=True
    )
    assert (again.updated, again.skipped) == (1, 2)
    assert {m["email"]: m["role"] for m in server.members(IID)}["j1@example.com"] == "admin"
    # Without update_roles the edited row is sent and skipped, naming the role it has.
    third = await am.bulk_import(
        client, instanceId=IID, members=[{**edited[2], "role": "admin"}], journal=journal
    )
    assert third.skipped_by_reason == {"already a member with role view": 1}


def test_a_journal_line_without_a_role_is_done_for_any_role(tmp_path: Path) -> None:
    """Lines written before roles were journaled keep meaning what they meant."""
    path = tmp_path / "j.journal"
    j = Journal(path, IID)
    j.record(0, ("e:old@example.com",), "created")
    j.record(1, ("e:new@example.com",), "created", "view")
    j.record(2, ("e:differs@example.com",), "role_differs")
    j.close()
    j = Journal(path, IID)
    try:
        assert j.has("e:old@example.com", "admin") and j.has("e:old@example.com", "view")
        assert j.has("e:new@example.com", "view") and not j.has("e:new@example.com", "admin")
        assert not j.has("e:differs@example.com", "view")
    finally:
        j.close()
