"""sync_members against the embedded server: the plan, the guard, the apply, under faults."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import asyncmembers as am
from asyncmembers.bulk import SyncPlan
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "sync-secret-token"
PATIENT = am.RetryPolicy(attempts=10, wait_initial=0.005, wait_max=0.05, timeout=60)


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url, retry=PATIENT) as c:
        yield c


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    """The embedded server shares the test's loop; its handler tasks are not ours."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "asyncmembers/testing" in filename


def state(server: FakeLosantServer) -> dict[str, str]:
    """The instance as {email: role}."""
    return {m["email"].lower(): m["role"] for m in server.members(IID)}


def seed(server: FakeLosantServer, members: dict[str, str]) -> None:
    for email, role in members.items():
        server.add_member(IID, email=email, role=role)


CURRENT = {
    "keep@example.com": "view",
    "promote@example.com": "view",
    "guarded@example.com": "admin",
    "leaver@example.com": "view",
    **{f"stay{i}@example.com": "view" for i in range(16)},
}
DESIRED: list[Any] = [
    {"email": "KEEP@example.com", "role": "view"},  # unchanged (case-insensitive match)
    {"email": "promote@example.com", "role": "admin"},  # role differs: PATCH
    {"email": "new@example.com", "role": "view"},  # missing: POST
    {"email": " keep@example.com ", "role": "admin"},  # duplicate of row 0: no request
    {"email": "guarded@example.com", "role": "owner"},  # invalid, but names a member
    *({"email": f"stay{i}@example.com", "role": "view"} for i in range(16)),
]  # leaver@example.com is in no row: removed with prune


def counts(result: am.SyncResult) -> tuple[int, int, int, int, int]:
    return (result.added, result.updated, result.removed, result.unchanged, result.failed)


async def test_dry_run_plans_every_kind_and_changes_nothing(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, CURRENT)
    outcomes: list[am.Outcome] = []
    result = await am.sync_members(
        client,
        instanceId=IID,
        members=DESIRED,
        prune=True,
        dry_run=True,
        on_outcome=outcomes.append,
    )
    assert result.dry_run
    assert counts(result) == (1, 1, 1, 18, 1)
    assert result.total == len(DESIRED) + 1 == sum(counts(result))
    kinds = {o.index: o.kind for o in outcomes}
    assert (kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]) == (
        "unchanged",
        "updated",
        "created",
        "unchanged",
        "failed",
    )
    [removal] = [o for o in outcomes if o.kind == "removed"]
    assert removal.member["email"] == "leaver@example.com"  # type: ignore[index]
    assert removal.index == len(DESIRED)
    assert state(server) == CURRENT
    assert server.stats.requests == 1  # the one read of the members, nothing else


@pytest.mark.parametrize("max_removals", [None, 1])
async def test_the_removal_guard_refuses_before_any_change(
    client: am.Client, server: FakeLosantServer, max_removals: int | None
) -> None:
    seed(server, CURRENT)
    half = DESIRED[:3]  # 18 of 20 current members would go
    with pytest.raises(
        am.ValidationError, match="would remove 18 of the instance's 20 members"
    ) as info:
        await am.sync_members(
            client, instanceId=IID, members=half, prune=True, max_removals=max_removals
        )
    assert info.value.field == "max_removals"
    assert "nothing was changed" in str(info.value)
    assert state(server) == CURRENT
    assert server.stats.requests == 1 and server.stats.posts_applied == 0  # the read only
    # The same list without prune removes nothing, so nothing guards it.
    result = await am.sync_members(client, instanceId=IID, members=half, dry_run=True)
    assert counts(result) == (1, 1, 0, 1, 0)


async def test_a_list_that_fails_part_way_changes_nothing(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, CURRENT)

    def broken() -> Iterator[dict[str, str]]:
        yield {"email": "new1@example.com", "role": "view"}
        yield {"email": "promote@example.com", "role": "admin"}
        raise am.ValidationError("line 3: the file turned unreadable")

    with pytest.raises(am.ValidationError, match="line 3") as info:
        await am.sync_members(
            client, instanceId=IID, members=broken(), prune=True, max_removals=100
        )
    assert state(server) == CURRENT  # neither the add nor the PATCH was sent
    assert server.stats.requests == 1
    assert isinstance(info.value.result, am.SyncResult)


async def test_sync_applies_the_plan(client: am.Client, server: FakeLosantServer) -> None:
    seed(server, CURRENT)
    result = await am.sync_members(
        client, instanceId=IID, members=DESIRED, prune=True, max_removals=1
    )
    assert counts(result) == (1, 1, 1, 18, 1)
    expected = {**CURRENT, "promote@example.com": "admin", "new@example.com": "view"}
    del expected["leaver@example.com"]
    assert state(server) == expected  # guarded@ kept: an invalid row names it
    # Every change is one request, plus the read.
    assert result.requests == 1 + 3
    again = await am.sync_members(
        client, instanceId=IID, members=DESIRED, prune=True, max_removals=0
    )
    assert counts(again) == (0, 0, 0, 20, 1)  # converged: nothing left to do


async def test_sync_without_prune_leaves_the_union(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, CURRENT)
    result = await am.sync_members(client, instanceId=IID, members=DESIRED)
    assert counts(result) == (1, 1, 0, 18, 1)
    assert state(server) == {**CURRENT, "promote@example.com": "admin", "new@example.com": "view"}


# -- under faults ---------------------------------------------------------------------------


def plan_lists(rng: random.Random, n: int) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A current instance of ``n`` and a desired list: 10 % new, 10 % role changes, 10 % gone."""
    current = {f"m{i}@example.com": rng.choice(["view", "admin"]) for i in range(n)}
    desired: list[dict[str, str]] = []
    for i, (email, role) in enumerate(current.items()):
        if i % 10 == 0:
            continue  # leaves
        if i % 10 == 1:
            role = "admin" if role == "view" else "view"
        desired.append({"email": email.upper() if i % 3 == 0 else email, "role": role})
    desired += [
        {"email": f"joiner{i}@example.com", "role": rng.choice(["view", "admin"])}
        for i in range(n // 10)
    ]
    rng.shuffle(desired)
    return current, desired


@pytest.mark.parametrize(
    ("seed_", "prune", "concurrency"), [(1, True, 32), (2, False, 8), (3, True, 4)]
)
async def test_sync_under_faults_converges_exactly(
    seed_: int, prune: bool, concurrency: int
) -> None:
    rng = random.Random(seed_)
    faults = Faults(
        latency=0.001,
        error_rate=0.05,
        rate_limit=1500.0,
        drop_before_commit_rate=0.04,
        drop_after_commit_rate=0.04,
    )
    current, desired = plan_lists(rng, 600)
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], seed=seed_
    ) as srv:
        seed(srv, current)
        srv.faults = faults
        outcomes: list[am.Outcome] = []
        async with am.Client(TOKEN, url=srv.url, retry=PATIENT) as c:
            result = await am.sync_members(
                c,
                instanceId=IID,
                members=iter(desired),
                prune=prune,
                max_removals=1000,
                concurrency=concurrency,
                on_outcome=outcomes.append,
            )
        srv.faults = Faults()
        final = state(srv)
        fired = srv.stats.faults
    want = {row["email"].lower(): row["role"] for row in desired}
    if prune:
        assert final == want  # exactly the list
    else:
        assert final == {**current, **want}  # the union, the list's roles winning
    assert result.ok, result.failures[:3]
    # Every row and every removal accounted for once.
    assert result.total == len(outcomes) == len(desired) + (60 if prune else 0)
    assert sorted(o.index for o in outcomes) == list(range(result.total))
    assert counts(result) == (60, 60, 60 if prune else 0, len(desired) - 120, 0)
    # No member the list holds was ever removed.
    removed = {o.member["email"] for o in outcomes if o.kind == "removed"}  # type: ignore[index]
    assert not removed & set(want)
    assert fired["drop_after_commit"] > 0 and fired["error"] > 0


# -- identities, journal, stopping ----------------------------------------------------------


async def test_rows_match_by_user_id_or_email_in_any_case(
    client: am.Client, server: FakeLosantServer
) -> None:
    by_id = server.add_member(IID, email="ided@example.com", role="view")
    server.add_member(IID, email="Mixed.Case@Example.com", role="admin")
    rows = [
        {"userId": by_id["userId"].upper(), "role": "admin"},  # the same member, by its id
        {"email": "mixed.case@example.COM", "role": "admin"},
        {"userId": "a" * 24, "role": "view"},  # a user the instance does not have
    ]
    result = await am.sync_members(client, instanceId=IID, members=rows, prune=True)
    assert counts(result) == (1, 1, 0, 1, 0)
    roles = {m["userId"]: m["role"] for m in server.members(IID)}
    assert roles[by_id["userId"]] == "admin" and roles["a" * 24] == "view" and len(roles) == 3


async def test_a_sync_journal_records_and_is_refused_for_an_import(
    client: am.Client, server: FakeLosantServer, tmp_path: Path
) -> None:
    seed(server, CURRENT)
    journal = tmp_path / "sync.journal"
    await am.sync_members(
        client, instanceId=IID, members=DESIRED, prune=True, max_removals=1, journal=journal
    )
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["mode"] == "sync" and lines[0]["instanceId"] == IID
    outcomes = {line.get("outcome") for line in lines[1:]}
    assert {"created", "updated", "removed", "unchanged", "failed"} <= outcomes
    with pytest.raises(am.ValidationError, match="records a sync run, not an import run"):
        await am.bulk_import(client, instanceId=IID, members=DESIRED, journal=journal)
    # A re-run with the same journal converges: nothing left to change.
    again = await am.sync_members(
        client, instanceId=IID, members=DESIRED, prune=True, max_removals=0, journal=journal
    )
    assert counts(again) == (0, 0, 0, 20, 1)


async def test_a_raising_on_outcome_stops_the_sync_with_its_result(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, CURRENT)
    calls = 0

    def on_outcome(o: am.Outcome) -> None:
        nonlocal calls
        calls += 1
        if o.kind == "created":
            raise RuntimeError("the caller's bug")

    with pytest.raises(RuntimeError) as info:
        await am.sync_members(
            client,
            instanceId=IID,
            members=DESIRED,
            prune=True,
            max_removals=1,
            on_outcome=on_outcome,
            concurrency=1,
        )
    partial = info.value.result  # type: ignore[attr-defined]
    assert isinstance(partial, am.SyncResult)
    assert partial.total == calls and partial.added == 1
    # With one worker, nothing after the raising row was sent: the removal was not made.
    assert "leaver@example.com" in state(server)


async def test_cancelling_a_sync_leaves_nothing_behind(
    server: FakeLosantServer, tmp_path: Path
) -> None:
    seed(server, CURRENT)
    server.faults = Faults(latency=0.05)
    before = asyncio.all_tasks()
    first_change = asyncio.Event()

    def on_outcome(o: am.Outcome) -> None:
        if o.kind in ("created", "updated", "removed"):
            first_change.set()

    async with am.Client(TOKEN, url=server.url) as c:
        task = asyncio.create_task(
            am.sync_members(
                c,
                instanceId=IID,
                members=DESIRED,
                prune=True,
                max_removals=1,
                journal=tmp_path / "j",
                concurrency=1,
                on_outcome=on_outcome,
            )
        )
        await first_change.wait()  # the plan is made, the changes have begun
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert [t for t in asyncio.all_tasks() - before if not _is_server_task(t)] == []
    # The journal's lock was released: another run may use it at once.
    server.faults = Faults()
    async with am.Client(TOKEN, url=server.url) as c:
        result = await am.sync_members(
            c, instanceId=IID, members=DESIRED, prune=True, max_removals=1, journal=tmp_path / "j"
        )
    assert result.failed == 1 and not set(state(server)) - set(CURRENT) - {"new@example.com"}


async def test_on_plan_shows_the_plan_before_any_change_and_can_stop_it(
    client: am.Client, server: FakeLosantServer
) -> None:
    seed(server, CURRENT)
    plans: list[SyncPlan] = []
    result = await am.sync_members(
        client, instanceId=IID, members=DESIRED, prune=True, max_removals=1, on_plan=plans.append
    )
    [plan] = plans
    assert (plan.current, plan.add, plan.update, plan.remove, plan.unchanged, plan.failed) == (
        20,
        1,
        1,
        1,
        18,
        1,
    )
    assert plan.samples["add"] == [DESIRED[2]] and plan.samples["update"] == [DESIRED[1]]
    assert [m["email"] for m in plan.samples["remove"]] == ["leaver@example.com"]
    assert counts(result) == (plan.add, plan.update, plan.remove, plan.unchanged, plan.failed)

    class NotConfirmed(Exception):
        pass

    def refuse(plan: SyncPlan) -> None:
        raise NotConfirmed

    server.reset_stats()
    with pytest.raises(NotConfirmed):
        await am.sync_members(
            client,
            instanceId=IID,
            members=[{"email": "x@example.com", "role": "view"}],
            on_plan=refuse,
        )
    assert server.stats.requests == 1  # the read only: nothing was changed


# An invalid row that names no member clearly (found by an outside attack: each of these
# rows' members was removed by a prune, although the README says it never is).
UNCLEAR_ROWS: list[tuple[str, Any, str]] = [
    ("name and address", {"email": "Bob <bob@example.com>", "role": "view"}, "bob"),
    ("zero-width space", {"email": "ann@example.com\u200b", "role": "view"}, "ann"),
    ("soft hyphen", {"email": "a\u00adnn@example.com", "role": "banana"}, "ann"),
]


@pytest.mark.parametrize(("name", "row", "who"), UNCLEAR_ROWS, ids=[r[0] for r in UNCLEAR_ROWS])
async def test_an_invalid_row_read_leniently_keeps_the_member_it_names(
    client: am.Client, server: FakeLosantServer, name: str, row: Any, who: str
) -> None:
    """Read leniently (case, space, invisible characters, ``Name <address>``), the row
    names a member: that one is kept, and the prune goes on for the others."""
    current = {"ann@example.com": "view", "bob@example.com": "view", "leaver@example.com": "view"}
    seed(server, current)
    others = [{"email": e, "role": "view"} for e in current if not e.startswith((who, "leaver"))]
    result = await am.sync_members(
        client, instanceId=IID, members=[row, *others], prune=True, max_removals=1
    )
    assert (result.removed, result.failed) == (1, 1)
    assert f"{who}@example.com" in state(server)
    assert "leaver@example.com" not in state(server)


@pytest.mark.parametrize(
    "bad",
    [
        {"email": 12345, "role": "view"},  # not a string
        "m0@example.com, view",  # not a row at all
        {"mail_address": "m0@example.com", "role": "view"},  # a column nobody recognised
        {"email": "zo\udceb@example.com", "role": "view"},  # a Latin-1 byte read as UTF-8
    ],
)
async def test_an_invalid_row_that_names_nobody_clearly_withholds_every_removal(
    client: am.Client, server: FakeLosantServer, bad: Any
) -> None:
    """It may mean any member: no member is removed, each removal fails saying why, and
    the rest of the plan (adds, role changes) is applied."""
    current = {f"m{i}@example.com": "view" for i in range(10)}
    seed(server, current)
    desired = [bad, {"email": "m1@example.com", "role": "admin"}]
    plans: list[SyncPlan] = []
    result = await am.sync_members(
        client, instanceId=IID, members=desired, prune=True, max_removals=100, on_plan=plans.append
    )
    assert (plans[0].remove, plans[0].failed, plans[0].withheld) == (0, 10, 9)
    assert state(server) == {**current, "m1@example.com": "admin"}
    assert (result.updated, result.removed, result.failed) == (1, 0, 1 + 9)
    withheld = [f for f in result.failures if "not removed" in str(f.error)]
    assert len(withheld) == 9
    assert "name no member clearly" in str(withheld[0].error)
    plan = await am.sync_members(
        client, instanceId=IID, members=desired, prune=True, max_removals=100, dry_run=True
    )
    assert (plan.removed, plan.failed) == (0, 1 + 9)


async def test_a_list_whose_rows_all_failed_removes_nobody(
    client: am.Client, server: FakeLosantServer
) -> None:
    current = {f"m{i}@example.com": "view" for i in range(10)}
    seed(server, current)
    desired = [{"mail_address": e, "role": "view"} for e in current]
    result = await am.sync_members(
        client, instanceId=IID, members=desired, prune=True, max_removals=100
    )
    assert state(server) == current
    assert (result.removed, result.failed) == (0, 20)


async def test_an_invalid_row_with_a_clear_new_email_does_not_hold_the_prune(
    client: am.Client, server: FakeLosantServer
) -> None:
    """A row whose email is valid but names nobody current (a new hire with a role that
    does not exist) cannot mean a current member: the prune goes on."""
    seed(server, {"keep@example.com": "view", "leaver@example.com": "view"})
    desired = [
        {"email": "new.hire@example.com", "role": "superuser"},
        {"email": "keep@example.com", "role": "view"},
    ]
    result = await am.sync_members(
        client, instanceId=IID, members=desired, prune=True, max_removals=1
    )
    assert (result.removed, result.failed) == (1, 1)
    assert state(server) == {"keep@example.com": "view"}


@pytest.mark.parametrize(("added_as", "outcome"), [("view", "updated"), ("admin", "unchanged")])
async def test_a_member_added_after_the_plan_gets_the_lists_role(
    client: am.Client, server: FakeLosantServer, added_as: str, outcome: str
) -> None:
    """Planned as an add, answered "already a member" (another admin added it after the
    plan was made): before, it was "unchanged" whatever its role (an outside attack),
    and the instance did not equal the list."""

    def add_meanwhile(plan: SyncPlan) -> None:
        server.add_member(IID, email="ann@example.com", role=added_as)

    outcomes: list[am.Outcome] = []
    result = await am.sync_members(
        client,
        instanceId=IID,
        members=[{"email": "ann@example.com", "role": "admin"}],
        on_plan=add_meanwhile,
        on_outcome=outcomes.append,
    )
    assert [o.kind for o in outcomes] == [outcome]
    assert result.ok and state(server) == {"ann@example.com": "admin"}


async def test_a_repeated_new_member_is_added_once(
    client: am.Client, server: FakeLosantServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planned adds are remembered for the last DEDUPE_WINDOW of them (memory flat for
    any list: kept in the member table they cost ~50 bytes a row, 153 MB for 2M rows, an
    outside attack). A nearer repeat is a duplicate; a farther one is POSTed, answered
    "already a member", and gets its row's role (the later row wins)."""
    from asyncmembers.bulk import _sync

    monkeypatch.setattr(_sync, "DEDUPE_WINDOW", 3)
    rows = [
        {"email": "n@example.com", "role": "view"},
        {"email": "N@example.com", "role": "view"},  # near: a duplicate
        *({"email": f"x{i}@example.com", "role": "view"} for i in range(3)),
        {"email": "n@example.com", "role": "admin"},  # past the window: sent again
    ]
    outcomes: list[am.Outcome] = []
    result = await am.sync_members(client, instanceId=IID, members=rows, on_outcome=outcomes.append)
    kinds = {o.index: (o.kind, o.reason) for o in outcomes}
    assert kinds[1] == ("unchanged", "duplicate in input")
    assert kinds[5] == ("updated", "role changed from view to admin")
    assert (result.added, result.updated, result.unchanged) == (4, 1, 1)
    assert state(server)["n@example.com"] == "admin" and len(state(server)) == 4
