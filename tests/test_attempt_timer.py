"""The transport's one timer for the attempts of its owned session (``_AttemptTimer``).

A total timeout of at least aiohttp's ``ceil_threshold`` (5 s by default) is not given
to aiohttp, which would arm a timer per request: the transport keeps one timer for all
attempts in flight, due where aiohttp's would be (the start plus the total, rounded up to
a whole second), and ends an overdue attempt as aiohttp does. These tests use a 1 s
total with ``ceil_threshold=0.5`` so that the timer is the transport's and a test takes
about two seconds. The time bounds asserted are guarantees with wide margins, not
performance figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import asyncmembers as am
from asyncmembers._transport import _AttemptTimer
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "attempt-timer-secret-token"
ONE_SECOND = aiohttp.ClientTimeout(total=1.0, ceil_threshold=0.5)
STALLED = Faults(stall_rate=1.0, stall_seconds=3600.0)
ONCE = am.RetryPolicy(attempts=1, timeout=60.0)


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url, timeout=ONE_SECOND, retry=ONCE) as c:
        yield c


def timer_of(client: am.Client) -> _AttemptTimer:
    timer = client._session.transport._timer
    assert timer is not None, "the timeout should be kept by the transport's timer"
    return timer


async def in_flight(client: am.Client, n: int = 1) -> None:
    """Wait until ``n`` attempts are in flight on the transport's timer."""
    for _ in range(500):
        if len(timer_of(client)._due) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the attempt never started")


@pytest.mark.parametrize(
    ("given", "ours"),
    [
        (30.0, True),
        (5.0, True),
        (4.9, False),
        (aiohttp.ClientTimeout(total=30.0), True),
        (aiohttp.ClientTimeout(total=30.0, sock_read=5.0), False),
        (aiohttp.ClientTimeout(total=30.0, ceil_threshold=60.0), False),
        (aiohttp.ClientTimeout(sock_read=5.0), False),
    ],
)
async def test_which_timeouts_the_transport_keeps(
    server: FakeLosantServer, given: float | aiohttp.ClientTimeout, ours: bool
) -> None:
    async with am.Client(TOKEN, url=server.url, timeout=given) as c:
        await c.instance_members.get(instanceId=IID)
        session = c._session.transport._session
        assert session is not None
        assert (c._session.transport._timer is not None) is ours
        if ours:
            assert session.timeout.total is None
        elif isinstance(given, aiohttp.ClientTimeout):
            assert session.timeout == given
        else:
            assert session.timeout == aiohttp.ClientTimeout(total=given)


async def test_a_stalled_attempt_times_out_and_the_task_goes_on(
    server: FakeLosantServer, client: am.Client
) -> None:
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    start = time.monotonic()
    with pytest.raises(am.TransportError, match=r"timed out after 1 s") as info:
        await client.instance_members.get(instanceId=IID)
    took = time.monotonic() - start
    assert 0.9 <= took < 10.0, took
    assert info.value.status is None
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the timer's cancel was undone
    assert timer_of(client)._due == {} and timer_of(client)._expired == set()
    server.faults = Faults()
    assert (await client.instance_members.get(instanceId=IID)).count == 0
    await asyncio.sleep(0)  # a leaked cancellation would be raised at this await


async def test_a_post_that_times_out_may_have_been_applied(
    server: FakeLosantServer, client: am.Client
) -> None:
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    with pytest.raises(am.TransportError, match="may have been applied"):
        await client.instance_members.post(
            instanceId=IID, member={"email": "slow@example.com", "role": "view"}
        )


async def test_only_the_overdue_attempt_is_ended(
    server: FakeLosantServer, client: am.Client
) -> None:
    """Calls that start while one attempt stalls, and are in flight when the timer fires
    for it, finish normally."""
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    stalled = asyncio.create_task(client.instance_members.get(instanceId=IID))
    await in_flight(client)
    server.faults = Faults(latency=0.05)
    done = 0

    async def steady() -> None:
        nonlocal done
        while not stalled.done():
            await client.instance_members.get(instanceId=IID)
            done += 1

    await asyncio.gather(*(steady() for _ in range(4)))
    with pytest.raises(am.TransportError, match="timed out"):
        await stalled
    assert done >= 8  # about a second at 50 ms a call, four at a time


async def test_a_cancel_from_the_caller_is_not_a_timeout(
    server: FakeLosantServer, client: am.Client
) -> None:
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    call = asyncio.create_task(client.instance_members.get(instanceId=IID))
    await in_flight(client)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert timer_of(client)._due == {}


async def test_a_cancel_that_comes_with_the_timeout_propagates(
    server: FakeLosantServer, client: am.Client
) -> None:
    """The timer ends the attempt and the caller cancels in the same loop iteration: the
    caller's cancellation wins (aiohttp's TimerContext does the same)."""
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    call = asyncio.create_task(client.instance_members.get(instanceId=IID))
    await in_flight(client)
    timer = timer_of(client)
    [(attempt, (task, _, cancelling))] = timer._due.items()
    timer._due[attempt] = (task, 0.0, cancelling)  # overdue now
    timer._fire()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert timer._due == {} and timer._expired == set()


async def test_the_timer_fires_only_while_attempts_are_in_flight(
    server: FakeLosantServer, client: am.Client
) -> None:
    await client.instance_members.get(instanceId=IID)
    timer = timer_of(client)
    assert timer._due == {} and timer._handle is not None
    await asyncio.sleep(timer._armed_for - asyncio.get_running_loop().time() + 0.1)
    assert timer._handle is None  # it fired, found nothing in flight and stopped
    await client.close()
    assert timer._handle is None


async def test_a_timer_run_a_hair_early_still_ends_the_attempt(
    server: FakeLosantServer, client: am.Client
) -> None:
    """uvloop runs timers in whole milliseconds: one may fire just before its time."""
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    call = asyncio.create_task(client.instance_members.get(instanceId=IID))
    await in_flight(client)
    timer = timer_of(client)
    [(attempt, (task, _, cancelling))] = timer._due.items()
    loop = asyncio.get_running_loop()
    due = loop.time() + 0.0005  # due half a millisecond from now, fired now
    timer._due[attempt] = (task, due, cancelling)
    assert timer._handle is not None
    timer._handle.cancel()
    timer._armed_for = due
    timer._fire()
    assert attempt in timer._expired  # at once, not at the next iteration
    with pytest.raises(am.TransportError, match="timed out"):
        await call


async def test_a_call_made_inside_an_attempt_keeps_both_timed(
    server: FakeLosantServer, client: am.Client
) -> None:
    """A scan_raw consumer runs inside its GET's attempt, in the same task: a call it
    makes is timed as an attempt of its own and leaves the GET's timing in place."""
    await client.instance_members.post(
        instanceId=IID, member={"email": "one@example.com", "role": "view"}
    )
    timer = timer_of(client)
    seen: list[int] = []

    async def consume(items: AsyncIterator[dict[str, object]]) -> int:
        async for _ in items:
            await client.instance_members.get(instanceId=IID)  # nested, same task
            seen.append(len(timer._due))  # the GET's attempt is still timed
        return len(seen)

    path = f"/instances/{IID}/members"
    assert await client.instance_members.scan_raw(path, consume) == 1
    assert seen == [1]
    assert timer._due == {} and timer._expired == set()
