"""The engine under bulk_import: bounded failures, progress, a raising callback, no idle GET."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "engine-secret-token"


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url) as c:
        yield c


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    """The embedded server shares the test's loop; its handler tasks are not ours."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "asyncmembers/testing" in filename


def mixed_rows(valid: int, invalid: int) -> list[dict[str, str]]:
    rows = [{"email": f"bad{i}@", "role": "view"} for i in range(invalid)]
    rows += [{"email": f"ok{i}@example.com", "role": "view"} for i in range(valid)]
    return rows


async def test_failures_are_counted_all_but_kept_as_a_bounded_sample(client: am.Client) -> None:
    failed: list[am.Outcome] = []
    rows = [*mixed_rows(5, 25), {"userId": "nope", "role": "view"}]

    def on_outcome(o: am.Outcome) -> None:
        if o.kind == "failed":
            failed.append(o)

    result = await am.bulk_import(
        client, instanceId=IID, members=rows, max_failures_kept=10, on_outcome=on_outcome
    )
    assert result.failed == 26 and len(result.failures) == 10 and result.failures_omitted == 16
    assert [f.index for f in result.failures] == list(range(10))  # the first ones, in order
    assert result.failures_by_type() == {"ValidationError": 26}
    assert len(failed) == 26  # every failure still reached the callback
    assert result.total == result.created + result.updated + result.skipped + result.failed == 31
    assert not result.ok
    d = result.to_dict()
    assert (d["failed"], d["failures_omitted"], d["created"]) == (26, 16, 5)


async def test_max_failures_kept_none_keeps_all_and_bad_values_are_refused(
    client: am.Client,
) -> None:
    result = await am.bulk_import(
        client, instanceId=IID, members=mixed_rows(0, 1200), max_failures_kept=None
    )
    assert len(result.failures) == 1200 and result.failures_omitted == 0
    default = await am.bulk_import(client, instanceId=IID, members=mixed_rows(0, 1200))
    assert len(default.failures) == 1000 and default.failures_omitted == 200
    for bad in (-1, 2.5, True, "10"):
        with pytest.raises(am.ValidationError) as info:
            await am.bulk_import(client, instanceId=IID, members=[], max_failures_kept=bad)  # type: ignore[arg-type]
        assert info.value.field == "max_failures_kept"


async def test_progress_is_live_and_finishes(client: am.Client, server: FakeLosantServer) -> None:
    server.faults = Faults(latency=0.005)
    progress = am.Progress(total=60)
    seen: list[int] = []

    async def watch() -> None:
        while not progress.finished:
            seen.append(progress.done)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    rows = mixed_rows(50, 10)
    result = await am.bulk_import(
        client, instanceId=IID, members=rows, concurrency=4, progress=progress
    )
    await watcher
    assert progress.finished and progress.done == result.total == 60
    assert (progress.created, progress.failed, progress.skipped) == (50, 10, 0)
    assert progress.eta == 0.0 and progress.rate > 0 and progress.elapsed > 0
    assert any(0 < n < 60 for n in seen), seen  # read mid-run by another task
    assert seen == sorted(seen)
    with pytest.raises(am.ValidationError):
        await am.bulk_import(client, instanceId=IID, members=[], progress=object())  # type: ignore[arg-type]


async def test_a_raising_on_outcome_stops_the_import_cleanly(
    client: am.Client, server: FakeLosantServer
) -> None:
    server.faults = Faults(latency=0.01)
    delivered: list[am.Outcome] = []
    before = asyncio.all_tasks()

    def on_outcome(o: am.Outcome) -> None:
        delivered.append(o)
        if len(delivered) == 25:
            raise KeyError("the caller's bug")

    rows = [{"email": f"cb{i}@example.com", "role": "view"} for i in range(5000)]
    with pytest.raises(KeyError) as info:
        await am.bulk_import(
            client, instanceId=IID, members=iter(rows), concurrency=8, on_outcome=on_outcome
        )
    partial = info.value.result  # type: ignore[attr-defined]
    assert isinstance(partial, am.BulkResult)
    assert len(delivered) == 25  # the broken callback is not called again
    assert "on_outcome" in "".join(getattr(info.value, "__notes__", []))
    await asyncio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() - before if not _is_server_task(t)] == []
    # Every worker stopped: nothing more reaches the server after the raise ...
    members = len(server.members(IID))
    await asyncio.sleep(0.1)
    assert len(server.members(IID)) == members < 100
    # ... and each row is counted once: the delivered ones, plus those in flight when the
    # callback raised, which were let finish (they were added: the result says so).
    assert partial.total == partial.created == members >= 25
    assert server.stats.posts_applied == members


async def test_the_first_post_does_not_wait_for_the_member_list(server: FakeLosantServer) -> None:
    """No idle round trip: the POSTs start while the read of the members is in flight."""
    events: list[tuple[str, str]] = []

    async def start(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        events.append(("start", params.method))

    async def end(_s: Any, _c: Any, params: aiohttp.TraceRequestEndParams) -> None:
        events.append(("end", params.method))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    server.faults = Faults(latency=0.05)
    rows = [{"email": f"first{i}@example.com", "role": "view"} for i in range(4)]
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        am.Client(TOKEN, url=server.url, session=session) as c,
    ):
        result = await am.bulk_import(c, instanceId=IID, members=rows, concurrency=4)
    assert result.created == 4
    first_post = events.index(("start", "POST"))
    assert ("end", "GET") not in events[:first_post], events


async def test_an_existing_member_with_another_role_is_updated_with_update_roles(
    client: am.Client, server: FakeLosantServer
) -> None:
    server.add_member(IID, email="viewer@example.com", role="view")
    server.add_member(IID, email="admin@example.com", role="admin")
    rows = [
        {"email": "Viewer@example.com", "role": "admin"},
        {"email": "admin@example.com", "role": "admin"},
        {"email": "fresh@example.com", "role": "view"},
    ]
    outcomes: list[am.Outcome] = []
    result = await am.bulk_import(
        client, instanceId=IID, members=rows, update_roles=True, on_outcome=outcomes.append
    )
    assert (result.created, result.updated, result.skipped, result.failed) == (1, 1, 1, 0)
    roles = {m["email"].lower(): m["role"] for m in server.members(IID)}
    assert roles == {
        "viewer@example.com": "admin",
        "admin@example.com": "admin",
        "fresh@example.com": "view",
    }
    assert {o.index: o.kind for o in outcomes} == {0: "updated", 1: "skipped", 2: "created"}
    again = await am.bulk_import(client, instanceId=IID, members=rows, update_roles=True)
    assert (again.created, again.updated, again.skipped) == (0, 0, 3)


async def test_update_roles_in_a_dry_run_changes_nothing(
    client: am.Client, server: FakeLosantServer
) -> None:
    server.add_member(IID, email="viewer@example.com", role="view")
    rows = [
        {"email": "viewer@example.com", "role": "admin"},
        {"email": "other@example.com", "role": "view"},
    ]
    result = await am.bulk_import(
        client, instanceId=IID, members=rows, update_roles=True, dry_run=True
    )
    assert (result.created, result.updated, result.skipped) == (1, 1, 0)
    assert [m["role"] for m in server.members(IID)] == ["view"]
    plain = await am.bulk_import(client, instanceId=IID, members=rows, dry_run=True)
    assert plain.skipped_by_reason == {"already a member with role view": 1}


async def test_a_post_confirmed_after_a_failed_attempt_is_not_counted_created_for_an_earlier_member(
    server: FakeLosantServer,
) -> None:
    """The member was there before; the row's first POST fails; the lookup finds it.

    Without the up-front read, the lookup's "found" used to count the row as created. The
    background read shows the member with another role than the row's: there before.
    """
    server.add_member(IID, email="earlier@example.com", role="view")
    loop = asyncio.get_running_loop()

    def rows() -> Iterator[dict[str, str]]:
        server.faults = Faults(error_rate=1.0)  # every request fails, for a moment
        loop.call_later(0.1, setattr, server, "faults", Faults())
        yield {"email": "earlier@example.com", "role": "admin"}

    retry = am.RetryPolicy(attempts=20, wait_initial=0.03, wait_max=0.05, timeout=30)
    async with am.Client(TOKEN, url=server.url, retry=retry) as c:
        result = await am.bulk_import(c, instanceId=IID, members=rows())
    assert result.retries + result.requests > 2  # the faults did hit it
    assert (result.created, result.skipped) == (0, 1), result
    assert result.skipped_by_reason == {"already a member with role view": 1}
    assert server.stats.posts_applied == 0


async def test_an_unreachable_api_stops_the_import_instead_of_failing_every_row() -> None:
    async with FakeLosantServer() as gone:
        url = gone.url  # nothing listens there any more
    read = 0

    def rows() -> Iterator[dict[str, str]]:
        nonlocal read
        for i in range(100_000):
            read += 1
            yield {"email": f"u{i}@example.com", "role": "view"}

    retry = am.RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, timeout=5)
    async with am.Client(TOKEN, url=url, retry=retry) as c:
        with pytest.raises(am.TransportError) as info:
            await am.bulk_import(c, instanceId=IID, members=rows(), concurrency=4)
    assert not info.value.sent and info.value.exit_status == 4
    assert isinstance(info.value.result, am.BulkResult)
    assert read < 100


async def test_a_row_with_a_user_id_and_another_users_email_is_not_a_duplicate() -> None:
    """The API resolves a row by userId first: {email e, userId u} can be user u, whose
    email is not e; a later row {email e} is then another user, not a duplicate."""
    u = "a" * 24
    users = [{"userId": u, "email": "x@example.com"}, {"email": "e@example.com"}]
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], users=users
    ) as srv:
        rows = [
            {"email": "e@example.com", "userId": u, "role": "view"},
            {"email": "E@example.com", "role": "view"},
        ]
        async with am.Client(TOKEN, url=srv.url) as c:
            result = await am.bulk_import(c, instanceId=IID, members=rows)
        emails = sorted(m["email"] for m in srv.members(IID))
    assert emails == ["e@example.com", "x@example.com"]
    assert (result.created, result.skipped) == (2, 0)
