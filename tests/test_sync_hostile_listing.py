"""sync_members with a server list that repeats members or omits their emails."""

from __future__ import annotations

import pytest

import asyncmembers as am
from tests.test_attack_sync import FAST, IID, TOKEN, Instance, serve, uid


async def test_a_member_listed_twice_and_not_wanted_is_removed_once() -> None:
    instance = Instance(20, listing="duplicates")
    desired = [{"email": f"m{i}@example.com", "role": "view"} for i in range(1, 20)]
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.sync_members(client, instanceId=IID, members=desired, prune=True)
    assert [c for c in instance.changes if c[0] == "DELETE"] == [
        ("DELETE", f"/instances/{IID}/members/{uid(0)}")
    ]
    assert uid(0) not in instance.members
    assert (result.removed, result.unchanged, result.failed, result.total) == (1, 19, 0, 20)


async def test_the_removal_guard_counts_a_repeated_member_once() -> None:
    # 20 distinct members listed as 23 entries: removing 3 is more than 10 % of 20.
    instance = Instance(20, listing="duplicates")
    desired = [{"email": f"m{i}@example.com", "role": "view"} for i in range(3, 20)]
    plans: list[am.SyncPlan] = []
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ValidationError, match=r"remove 3 of the instance's 20 members"):
            await am.sync_members(
                client, instanceId=IID, members=desired, prune=True, on_plan=plans.append
            )
    assert instance.changes == []
    assert (plans[0].current, plans[0].remove) == (20, 3)


@pytest.mark.parametrize("dry_run", [False, True])
async def test_a_member_listed_without_email_is_withheld_when_rows_name_members_by_email(
    dry_run: bool,
) -> None:
    instance = Instance(20, listing="no-email")
    desired = [{"email": f"m{i}@example.com", "role": "view"} for i in range(20)]
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.sync_members(
            client, instanceId=IID, members=desired, prune=True, dry_run=dry_run
        )
    assert [c for c in instance.changes if c[0] == "DELETE"] == []
    assert uid(0) in instance.members
    assert result.removed == 0 and result.failed == 1
    failure = result.failures[0]
    assert failure.member == {"userId": uid(0), "role": "view"}
    assert "not removed" in str(failure.error) and "without an email" in str(failure.error)
    assert result.total == result.added + result.updated + result.removed + result.unchanged + 1


async def test_a_member_listed_without_email_is_removed_when_every_row_names_a_user_id() -> None:
    instance = Instance(20, listing="no-email")
    desired = [{"userId": uid(i), "role": "view"} for i in range(1, 20)]
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.sync_members(client, instanceId=IID, members=desired, prune=True)
    assert uid(0) not in instance.members
    assert (result.removed, result.failed) == (1, 0)


async def test_a_desired_list_that_raises_midway_changes_nothing_and_keeps_the_result() -> None:
    instance = Instance(5, listing="plain")

    def rows() -> object:
        yield {"email": "new@example.com", "role": "view"}
        yield {"email": "m0@example.com", "role": "view"}
        raise RuntimeError("the caller's list failed")

    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(RuntimeError, match="the caller's list failed") as info:
            await am.sync_members(client, instanceId=IID, members=rows(), prune=True)  # type: ignore[arg-type]
    assert instance.changes == []
    result = info.value.result  # type: ignore[attr-defined]
    assert isinstance(result, am.SyncResult)
    assert (result.total, result.unchanged) == (1, 1)
