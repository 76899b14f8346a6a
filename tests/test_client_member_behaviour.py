"""``client.instance_member`` and the raw interface against the embedded server, faults on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import asyncmembers as am
from asyncmembers.resources import member_path, members_path
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "behaviour-token"
FAST = am.RetryPolicy(attempts=8, wait_initial=0.001, wait_max=0.01, timeout=30)


async def seeded(faults: Faults, n: int = 40, seed: int = 1) -> FakeLosantServer:
    server = FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, seed=seed
    )
    await server.start()
    server.add_members(IID, ({"email": f"m{i}@example.com"} for i in range(n)))
    return server


async def test_get_patch_delete_round_trip() -> None:
    server = await seeded(Faults())
    try:
        async with am.Client(TOKEN, url=server.url, retry=FAST) as c:
            uid = server.members(IID)[0]["userId"]
            got = await c.instance_member.get(instanceId=IID, userId=uid.upper())
            assert got.user_id == uid and got.role is am.Role.VIEW
            changed = await c.instance_member.patch(
                instanceId=IID, userId=uid, member={"role": "admin"}
            )
            assert changed.role is am.Role.ADMIN
            assert await c.instance_member.delete(instanceId=IID, userId=uid) is None
            assert uid not in {m["userId"] for m in server.members(IID)}
            with pytest.raises(am.NotFoundError) as info:
                await c.instance_member.get(instanceId=IID, userId=uid)
            assert not info.value.fatal
            with pytest.raises(am.NotFoundError):
                await c.instance_member.delete(instanceId=IID, userId=uid)
    finally:
        await server.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_patch_and_delete_under_faults_end_exactly_as_asked(seed: int) -> None:
    """5xx, cuts before and after commit: every PATCH and DELETE is retried to the end, a
    DELETE applied before its cut is not reported missing, and the truth is exactly that."""
    faults = Faults(error_rate=0.15, drop_before_commit_rate=0.1, drop_after_commit_rate=0.15)
    server = await seeded(faults, seed=seed)
    try:
        members = server.members(IID)
        to_admin = [m["userId"] for m in members[:15]]
        to_remove = [m["userId"] for m in members[15:30]]
        async with am.Client(TOKEN, url=server.url, retry=FAST) as c:
            for uid in to_admin:
                m = await c.instance_member.patch(
                    instanceId=IID, userId=uid, member={"role": "admin"}
                )
                assert m.role is am.Role.ADMIN
            for uid in to_remove:
                # gone_ok: the run has read the member as present (SPEC 5: aiohttp itself may
                # resend a DELETE whose first send was applied before a cut).
                await c.instance_member.delete_raw(member_path(IID, uid), gone_ok=True)
        truth = {m["userId"]: m["role"] for m in server.members(IID)}
        assert all(truth[u] == "admin" for u in to_admin)
        assert not set(to_remove) & set(truth)
        assert len(truth) == 40 - len(to_remove)
    finally:
        await server.close()


async def test_scan_and_find_under_faults() -> None:
    faults = Faults(error_rate=0.3, drop_before_commit_rate=0.1)
    server = await seeded(faults, n=3000, seed=4)
    try:
        async with am.Client(TOKEN, url=server.url, retry=FAST) as c:
            starts = 0

            async def consume(items: AsyncIterator[dict[str, Any]]) -> set[str]:
                nonlocal starts
                starts += 1
                return {item["email"] async for item in items}

            res = c.instance_members
            emails = await res.scan_raw(members_path(IID), consume)
            assert emails == {f"m{i}@example.com" for i in range(3000)}
            assert starts >= 1
            found = await res.find_raw(members_path(IID), email="M17@EXAMPLE.com")
            assert found is not None and found["email"] == "m17@example.com"
            uid = server.members(IID)[2999]["userId"]
            by_id = await res.find_raw(members_path(IID), user_id=uid)
            assert by_id is not None and by_id["userId"] == uid
            assert await res.find_raw(members_path(IID), email="nobody@example.com") is None
    finally:
        await server.close()


async def test_add_raw_under_cuts_after_commit_adds_each_member_once() -> None:
    server = await seeded(Faults(drop_after_commit_rate=0.5, error_rate=0.2), n=0, seed=5)
    try:
        async with am.Client(TOKEN, url=server.url, retry=FAST) as c:
            for i in range(20):
                post = am.InstanceMemberPost(role="view", email=f"New{i}@Example.com")
                data = await c.instance_members.add_raw(members_path(IID), post)
                assert data["email"].lower() == f"new{i}@example.com"
        assert sorted(m["email"].lower() for m in server.members(IID)) == sorted(
            f"new{i}@example.com" for i in range(20)
        )
    finally:
        await server.close()
