"""remove_members and the graceful stop, against the embedded server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
MISSING_IID = "0123456789abcdef01234567"
TOKEN = "remove-secret-token-7a1b"
READ_TOKEN = "remove-read-only-token-2c3d"
NO_SCOPE_TOKEN = "remove-no-scope-token-4e5f"
PATIENT = am.RetryPolicy(attempts=12, wait_initial=0.005, wait_max=0.05, timeout=60)


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    tokens = {TOKEN: ["all.Instance"], READ_TOKEN: ["all.Instance.read"], NO_SCOPE_TOKEN: []}
    async with FakeLosantServer(tokens=tokens, instances=[IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        yield c


def state(server: FakeLosantServer) -> dict[str, str]:
    return {m["email"].lower(): m["role"] for m in server.members(IID)}


def seed(server: FakeLosantServer, n: int) -> dict[str, str]:
    """n members m0..m(n-1); returns {email: userId}."""
    ids = {}
    for i in range(n):
        m = server.add_member(IID, email=f"m{i}@example.com", role="view" if i % 2 else "admin")
        ids[m["email"]] = m["userId"]
    return ids


def kinds(outcomes: list[am.Outcome]) -> dict[int, tuple[str, str | None]]:
    by_index: dict[int, tuple[str, str | None]] = {}
    for o in outcomes:
        assert o.index not in by_index, f"row {o.index} accounted for twice"
        by_index[o.index] = (o.kind, o.reason)
    return by_index


async def test_every_row_form_is_accounted_for_once(
    client: am.Client, server: FakeLosantServer
) -> None:
    ids = seed(server, 8)
    rows: list[Any] = [
        {"email": "M0@Example.com"},  # 0: no role, any case: removed
        {"userId": ids["m1@example.com"].upper(), "role": "owner"},  # 1: role ignored: removed
        {"email": "m2@example.com", "userId": ids["m2@example.com"], "role": "view"},  # 2
        am.InstanceMemberPost(role="admin", email="m3@example.com"),  # 3: removed
        {"email": "nobody@example.com"},  # 4: not a member
        {"email": " m0@example.com "},  # 5: duplicate of row 0
        {"email": "not-an-address"},  # 6: invalid: failed, never sent
        {"role": "view"},  # 7: names nobody: failed
        {"userId": "5f0c1a2b3c4d5e6f7a8b9c0d"},  # 8: not a member
    ]
    outcomes: list[am.Outcome] = []
    progress = am.Progress()
    result = await am.remove_members(
        client, instanceId=IID, members=rows, on_outcome=outcomes.append, progress=progress
    )
    assert isinstance(result, am.RemoveResult)
    assert (result.total, result.removed, result.skipped, result.failed) == (9, 4, 3, 2)
    assert result.total == result.removed + result.skipped + result.failed == len(rows)
    assert result.skipped_by_reason == {"not a member": 2, "duplicate in input": 1}
    got = kinds(outcomes)
    assert sorted(got) == list(range(len(rows)))
    assert [got[i][0] for i in range(len(rows))] == [
        "removed",
        "removed",
        "removed",
        "removed",
        "skipped",
        "skipped",
        "failed",
        "failed",
        "skipped",
    ]
    assert got[4][1] == "not a member" and got[5][1] == "duplicate in input"
    assert sorted(state(server)) == [f"m{i}@example.com" for i in range(4, 8)]
    # One read of the members, one DELETE per member removed, nothing else.
    assert server.stats.by_method == {"GET": 1, "DELETE": 4}
    assert (progress.done, progress.removed, progress.skipped, progress.failed) == (9, 4, 3, 2)
    assert progress.finished
    assert [f.index for f in result.failures] == [6, 7]
    assert isinstance(result.failures[0].error, am.ValidationError)
    assert result.to_dict()["removed"] == 4 and "RemoveResult(total=9" in repr(result)


async def test_dry_run_removes_nobody(client: am.Client, server: FakeLosantServer) -> None:
    seed(server, 4)
    rows = [{"email": "m1@example.com"}, {"email": "m2@example.com"}, {"email": "x@example.com"}]
    result = await am.remove_members(client, instanceId=IID, members=rows, dry_run=True)
    assert result.dry_run and (result.removed, result.skipped) == (2, 1)
    assert len(state(server)) == 4 and server.stats.by_method == {"GET": 1}


@pytest.mark.parametrize("seed_", [1, 2, 3])
async def test_under_faults_exactly_the_listed_members_go(
    server: FakeLosantServer, seed_: int
) -> None:
    rng = random.Random(seed_)
    ids = seed(server, 120)
    listed = rng.sample(sorted(ids), 60)
    rows: list[dict[str, str]] = []
    for i, email in enumerate(listed):
        rows.append({"userId": ids[email]} if i % 3 == 0 else {"email": email.upper()})
    rows += [{"email": f"stranger{i}@example.com"} for i in range(10)]
    rng.shuffle(rows)
    server.faults = Faults(
        error_rate=0.1,
        drop_before_commit_rate=0.05,
        drop_after_commit_rate=0.1,
        rate_limit=400,
        rate_limit_burst=5,
    )
    outcomes: list[am.Outcome] = []
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        result = await am.remove_members(
            c, instanceId=IID, members=rows, concurrency=8, on_outcome=outcomes.append
        )
    server.faults = Faults()
    assert result.ok, result.failures
    assert sorted(state(server)) == sorted(set(ids) - set(listed))  # nobody else touched
    assert (result.removed, result.skipped) == (60, 10)
    assert sorted(kinds(outcomes)) == list(range(len(rows)))
    assert server.stats.deletes_applied == 60
    assert server.stats.faults  # the faults did happen


async def test_a_read_refused_sends_no_delete(server: FakeLosantServer) -> None:
    seed(server, 3)
    rows = [{"email": "m0@example.com"}, {"email": "m1@example.com"}]
    for token, iid, error in (
        ("wrong-token-0000", IID, am.UnauthorizedError),
        (NO_SCOPE_TOKEN, IID, am.ForbiddenError),
        (TOKEN, MISSING_IID, am.NotFoundError),
    ):
        async with am.Client(token, url=server.url) as c:
            with pytest.raises(error) as info:
                await am.remove_members(c, instanceId=iid, members=rows)
        assert isinstance(info.value.result, am.RemoveResult)
        assert info.value.result.total == 0
    assert server.stats.by_method["DELETE"] == 0 and len(state(server)) == 3


async def test_a_read_only_token_stops_at_the_first_refused_delete(
    server: FakeLosantServer,
) -> None:
    seed(server, 3)
    rows = [{"email": f"m{i}@example.com"} for i in range(3)]
    async with am.Client(READ_TOKEN, url=server.url) as c:
        with pytest.raises(am.ForbiddenError) as info:
            await am.remove_members(c, instanceId=IID, members=rows, concurrency=1)
    assert server.stats.deletes_applied == 0 and server.stats.by_method["DELETE"] == 1
    assert len(state(server)) == 3 and info.value.result.removed == 0


async def test_the_journal_resumes_and_is_its_own_mode(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    seed(server, 6)
    journal = tmp_path / "remove.journal"
    rows = [{"email": f"m{i}@example.com"} for i in range(4)]
    first = await am.remove_members(client, instanceId=IID, members=rows[:2], journal=journal)
    assert first.removed == 2
    again = await am.remove_members(client, instanceId=IID, members=rows, journal=journal)
    assert again.removed == 2 and again.skipped_by_reason == {"done in an earlier run": 2}
    assert sorted(state(server)) == ["m4@example.com", "m5@example.com"]
    with pytest.raises(am.ValidationError, match="records a remove run, not an import run"):
        await am.bulk_import(client, instanceId=IID, members=[], journal=journal)
    with pytest.raises(am.ValidationError, match="journal"):
        await am.remove_members(
            client, instanceId=IID, members=rows, journal=journal, protect=[journal]
        )


async def test_bad_settings_are_refused_before_any_request(
    client: am.Client, server: FakeLosantServer
) -> None:
    for kwargs, field in (
        ({"concurrency": 0}, "concurrency"),
        ({"max_rate": -1}, "max_rate"),
        ({"stop": object()}, "stop"),
        ({"instanceId": "nope"}, "instanceId"),
    ):
        args: dict[str, Any] = {"instanceId": IID, "members": [], **kwargs}
        with pytest.raises(am.ValidationError) as info:
            await am.remove_members(client, **args)
        assert info.value.field == field
    assert server.stats.requests == 0


# -- the graceful stop ----------------------------------------------------------------


async def test_a_stop_lets_the_removals_in_flight_finish_and_counts_each_once(
    server: FakeLosantServer,
) -> None:
    seed(server, 80)
    server.faults = Faults(latency=0.02)
    stop = asyncio.Event()
    outcomes: list[am.Outcome] = []

    def on_outcome(o: am.Outcome) -> None:
        outcomes.append(o)
        if len(outcomes) == 10:
            stop.set()

    rows = [{"email": f"m{i}@example.com"} for i in range(80)]
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        with pytest.raises(am.StoppedError) as info:
            await am.remove_members(
                c, instanceId=IID, members=rows, concurrency=4, on_outcome=on_outcome, stop=stop
            )
    partial = info.value.result
    assert isinstance(partial, am.RemoveResult)
    # The requests in flight at the stop finished, were counted and reached on_outcome.
    assert partial.total == len(outcomes) == partial.removed
    assert 10 <= partial.total <= 10 + 4 + 4  # in flight + the queue: nothing new after
    assert sorted(kinds(outcomes)) == sorted(o.index for o in outcomes)
    removed = 80 - len(state(server))
    assert removed == partial.removed == server.stats.by_method["DELETE"]
    # Running it again finishes the job.
    server.faults = Faults()
    async with am.Client(TOKEN, url=server.url) as c:
        again = await am.remove_members(c, instanceId=IID, members=rows)
    assert again.removed == 80 - removed and state(server) == {}


async def test_a_stop_of_an_import_keeps_the_journal_and_outcomes(
    server: FakeLosantServer, tmp_path: Path
) -> None:
    server.faults = Faults(latency=0.02)
    stop = asyncio.Event()
    outcomes: list[am.Outcome] = []

    def on_outcome(o: am.Outcome) -> None:
        outcomes.append(o)
        if len(outcomes) == 5:
            stop.set()

    rows = [{"email": f"n{i}@example.com", "role": "view"} for i in range(60)]
    journal = tmp_path / "j"
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        with pytest.raises(am.StoppedError) as info:
            await am.bulk_import(
                c,
                instanceId=IID,
                members=rows,
                concurrency=3,
                on_outcome=on_outcome,
                stop=stop,
                journal=journal,
            )
        partial = info.value.result
        assert isinstance(partial, am.BulkResult)
        assert partial.total == len(outcomes) == partial.created == len(state(server)) < 60
        result = await am.bulk_import(c, instanceId=IID, members=rows, journal=journal)
    assert result.skipped_by_reason == {"done in an earlier run": partial.created}
    assert len(state(server)) == 60


async def test_a_stop_set_before_the_call_sends_nothing(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, 3)
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(am.StoppedError):
        await am.remove_members(
            client, instanceId=IID, members=[{"email": "m0@example.com"}], stop=stop
        )
    with pytest.raises(am.StoppedError):
        await am.sync_members(client, instanceId=IID, members=[], prune=True, stop=stop)
    assert server.stats.requests == 0 and len(state(server)) == 3


async def test_a_sync_stopped_while_reading_the_list_changes_nothing(
    client: am.Client, server: FakeLosantServer
) -> None:
    ids = seed(server, 20)
    stop = asyncio.Event()
    wanted = sorted(ids)

    async def rows() -> AsyncIterator[dict[str, str]]:
        for i, email in enumerate(wanted):
            if i == 10:
                stop.set()  # half the list read: the other half must never be pruned
                await asyncio.sleep(0.01)
            yield {"email": email, "role": "admin"}

    with pytest.raises(am.StoppedError) as info:
        await am.sync_members(
            client, instanceId=IID, members=rows(), prune=True, max_removals=100, stop=stop
        )
    assert server.stats.changes_applied == 0 and server.stats.by_method["DELETE"] == 0
    assert len(state(server)) == 20
    assert info.value.result.removed == info.value.result.added == 0


async def test_a_sync_stopped_after_the_plan_never_prunes_a_listed_member(
    server: FakeLosantServer,
) -> None:
    ids = seed(server, 60)
    listed = sorted(ids)[:40]  # the other 20 are leavers
    desired = [{"email": e, "role": "admin"} for e in listed] + [
        {"email": f"new{i}@example.com", "role": "view"} for i in range(20)
    ]
    server.faults = Faults(latency=0.01)
    stop = asyncio.Event()
    outcomes: list[am.Outcome] = []
    progress = am.Progress()
    totals: list[int | None] = []

    def on_plan(plan: Any) -> None:
        totals.append(progress.total)

    def on_outcome(o: am.Outcome) -> None:
        outcomes.append(o)
        if sum(x.kind in ("created", "updated", "removed") for x in outcomes) == 15:
            stop.set()

    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        with pytest.raises(am.StoppedError) as info:
            await am.sync_members(
                c,
                instanceId=IID,
                members=desired,
                prune=True,
                max_removals=20,
                concurrency=4,
                on_outcome=on_outcome,
                progress=progress,
                on_plan=on_plan,
                stop=stop,
            )
    partial = info.value.result
    assert isinstance(partial, am.SyncResult)
    assert progress.total == len(desired) + 20  # set by the engine from the plan
    assert partial.total == len(outcomes) < progress.total
    after = state(server)
    assert all(e in after for e in listed)  # no listed member was ever removed
    assert len(ids) - (len(after) - partial.added) == partial.removed
    assert server.stats.deletes_applied == partial.removed
    server.faults = Faults()
    async with am.Client(TOKEN, url=server.url) as c:
        await am.sync_members(c, instanceId=IID, members=desired, prune=True, max_removals=20)
    assert state(server) == {row["email"]: row["role"] for row in desired}


async def test_the_list_is_read_lazily_and_a_stop_leaves_no_task_behind(
    server: FakeLosantServer,
) -> None:
    seed(server, 40)
    server.faults = Faults(latency=0.01)
    stop = asyncio.Event()
    read = 0
    done = 0
    ahead = 0

    def rows() -> Any:
        nonlocal read, ahead
        for i in range(100_000):  # far more rows than the run will ever read
            read += 1
            ahead = max(ahead, read - done)
            yield {"email": f"m{i}@example.com"}

    def on_outcome(o: am.Outcome) -> None:
        nonlocal done
        done += 1
        if done == 20:
            stop.set()

    before = asyncio.all_tasks()
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        with pytest.raises(am.StoppedError):
            await am.remove_members(
                c, instanceId=IID, members=rows(), concurrency=2, on_outcome=on_outcome, stop=stop
            )
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() - before if not _is_server_task(t)]
    assert left == []
    assert ahead <= 2 * 2 + 2  # workers + the bounded queue + the row being classified
    assert read < 40


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    """The embedded server shares the test's loop; its handler tasks are not ours."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "asyncmembers/testing" in filename
