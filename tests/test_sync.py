"""sync_members against the embedded server: the plan, the guard, the apply, under faults."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import asyncmembers as am
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
