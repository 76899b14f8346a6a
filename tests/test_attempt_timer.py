"""The transport's one timer for the total timeout of every attempt (``_AttemptTimer``).

aiohttp is never given an attempt's total: it would arm a timer per request, and its
timeout context undoes a cancellation twice (a caller's ``task.cancel()`` that came with
the timeout was swallowed, and a bulk import cancelled so could hang). The transport keeps
one timer for all attempts in flight, due where aiohttp's would be (the start plus the
total, rounded up to a whole second from aiohttp's ``ceil_threshold``, 5 s, up), and ends
an overdue attempt with a ``TransportError``. The time bounds asserted are guarantees with
wide margins, not performance figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import attrs
import pytest

import asyncmembers as am
from asyncmembers._transport import _AttemptTimer
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "attempt-timer-secret-token"
ONE_SECOND = 1.0
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
        timer = client._session.transport._timer
        if timer is not None and len(timer._due) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the attempt never started")


async def one_stalled_call(
    server: FakeLosantServer, client: am.Client
) -> tuple[asyncio.Task[object], _AttemptTimer, int]:
    """A GET the server never answers, in flight: its task, the timer and its attempt."""
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    call: asyncio.Task[object] = asyncio.create_task(client.instance_members.get(instanceId=IID))
    await in_flight(client)
    timer = timer_of(client)
    [attempt] = timer._due
    return call, timer, attempt


@pytest.mark.parametrize(
    "given",
    [
        30.0,
        4.9,
        aiohttp.ClientTimeout(total=30.0),
        aiohttp.ClientTimeout(total=30.0, sock_read=5.0, ceil_threshold=60.0),
        aiohttp.ClientTimeout(sock_read=5.0),
    ],
)
async def test_aiohttp_is_given_every_timeout_but_the_total(
    server: FakeLosantServer, given: float | aiohttp.ClientTimeout
) -> None:
    async with am.Client(TOKEN, url=server.url, timeout=given) as c:
        await c.instance_members.get(instanceId=IID)
        session = c._session.transport._session
        assert session is not None and c._session.transport._timer is not None
        expected = given if isinstance(given, aiohttp.ClientTimeout) else None
        expected = expected or aiohttp.ClientTimeout(total=float(given))  # type: ignore[arg-type]
        assert session.timeout == attrs.evolve(expected, total=None)


async def test_a_long_total_is_due_at_a_whole_second(
    server: FakeLosantServer,
) -> None:
    """As aiohttp rounds a total of at least its ceil_threshold (5 s)."""
    async with am.Client(TOKEN, url=server.url, timeout=30.0) as c:
        await c.instance_members.get(instanceId=IID)
        server.faults = STALLED
        call = asyncio.create_task(c.instance_members.get(instanceId=IID))
        await in_flight(c)
        start = asyncio.get_running_loop().time()
        [(_, due, _)] = timer_of(c)._due.values()
        assert due == int(due) and start + 30.0 - 0.5 <= due <= start + 31.0
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


async def test_a_stalled_attempt_times_out_and_the_task_goes_on(
    server: FakeLosantServer, client: am.Client
) -> None:
    await client.instance_members.get(instanceId=IID)
    server.faults = STALLED
    start = time.monotonic()
    with pytest.raises(am.TransportError, match=r"timed out after 1 s") as info:
        await client.instance_members.get(instanceId=IID)
    took = time.monotonic() - start
    assert 0.99 <= took < 10.0, took
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
    call, timer, _ = await one_stalled_call(server, client)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert timer._due == {}


async def test_a_cancel_that_comes_with_the_timeout_propagates(
    server: FakeLosantServer, client: am.Client
) -> None:
    """The timer ends the attempt and the caller cancels in the same loop iteration: the
    caller's cancellation wins (aiohttp's TimerContext does the same)."""
    call, timer, attempt = await one_stalled_call(server, client)
    task, _, cancelling = timer._due[attempt]
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
    call, timer, attempt = await one_stalled_call(server, client)
    task, _, cancelling = timer._due[attempt]
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


# -- found by an outside attack on the timeouts (session 8) ----------------------------------


@pytest.mark.parametrize("how", ["attempt", "call budget", "post"])
async def test_a_cancel_that_lands_on_the_timeout_is_never_swallowed(
    server: FakeLosantServer, how: str
) -> None:
    """The caller cancels at the very moment the attempt times out. With aiohttp keeping
    the total, the call ended with a timeout error and the task was never cancelled (20
    of 20 tries, at a 0.2 s attempt timeout or a 0.3 s RetryPolicy.timeout)."""
    limit = 0.2
    if how == "call budget":
        c = am.Client(TOKEN, url=server.url, retry=am.RetryPolicy(attempts=1, timeout=limit))
    else:
        c = am.Client(TOKEN, url=server.url, timeout=limit, retry=am.RetryPolicy(attempts=1))
    async with c:
        await c.instance_members.get(instanceId=IID)
        server.faults = STALLED
        loop = asyncio.get_running_loop()
        for n in range(8):
            if how == "post":
                member = {"email": f"race{n}@example.com", "role": "view"}
                call = asyncio.create_task(c.instance_members.post(instanceId=IID, member=member))
            else:
                call = asyncio.create_task(c.instance_members.get(instanceId=IID))
            loop.call_at(loop.time() + limit, call.cancel)
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled()


async def test_a_bulk_import_cancelled_as_its_attempts_time_out_returns(
    server: FakeLosantServer,
) -> None:
    """asyncio.timeout() around bulk_import, due with the attempts of its stalled
    requests: before, a worker whose cancellation aiohttp swallowed waited for rows
    forever, and bulk_import never returned (6 of 6 runs on uvloop)."""
    server.faults = Faults(stall_rate=0.2, stall_seconds=3600.0)
    rows = [{"email": f"user{i}@example.com", "role": "view"} for i in range(400)]
    async with am.Client(TOKEN, url=server.url, timeout=0.5) as c:

        async def run() -> None:
            async with asyncio.timeout(0.5):
                await am.bulk_import(c, instanceId=IID, members=rows, concurrency=64)

        job = asyncio.create_task(run())
        done, _ = await asyncio.wait({job}, timeout=20.0)
        assert done, "bulk_import did not return after its caller's timeout"
        with pytest.raises(TimeoutError):
            job.result()


async def test_closing_ends_calls_queued_for_a_connection_as_closed(
    server: FakeLosantServer,
) -> None:
    """Calls waiting for a connection from the pool when close() runs: aiohttp cancels
    those waits, which reached the caller as a CancelledError nobody had asked for."""
    server.faults = STALLED
    c = am.Client(TOKEN, url=server.url, max_connections=2, retry=ONCE)
    calls = [asyncio.create_task(c.instance_members.get(instanceId=IID)) for _ in range(5)]
    await in_flight(c, 5)
    await asyncio.sleep(0.2)  # two are sent; three wait for a connection
    await c.close()
    ended = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(e, am.ClientClosedError) for e in ended), ended
    assert sum(e.in_flight for e in ended if isinstance(e, am.ClientClosedError)) >= 2


async def test_an_attempt_ends_on_time_while_a_scan_consumer_waits(
    server: FakeLosantServer, client: am.Client
) -> None:
    """aiohttp checked its deadline only when the body was read again: a consumer that
    took 3 s kept a 1 s attempt going for 3 s."""
    for i in range(3):
        await client.instance_members.post(
            instanceId=IID, member={"email": f"s{i}@example.com", "role": "view"}
        )

    async def consume(items: AsyncIterator[dict[str, object]]) -> int:
        async for _ in items:
            await asyncio.sleep(3.0)  # the caller's own work, inside the attempt
        return 0

    start = time.monotonic()
    with pytest.raises(am.TransportError, match="timed out after 1 s"):
        await client.instance_members.scan_raw(f"/instances/{IID}/members", consume)
    assert time.monotonic() - start < 2.5


async def test_a_nearer_call_deadline_is_the_attempts_total(server: FakeLosantServer) -> None:
    policy = am.RetryPolicy(attempts=1, timeout=0.4)
    async with am.Client(TOKEN, url=server.url, retry=policy) as c:
        await c.instance_members.get(instanceId=IID)
        server.faults = STALLED
        start = time.monotonic()
        with pytest.raises(am.TransportError, match=r"timed out after 0\.\d+ s"):
            await c.instance_members.get(instanceId=IID)
        assert 0.3 <= time.monotonic() - start < 3.0


async def test_a_sock_read_timeout_says_so(server: FakeLosantServer) -> None:
    timeout = aiohttp.ClientTimeout(total=30.0, sock_read=0.3)
    async with am.Client(TOKEN, url=server.url, timeout=timeout, retry=ONCE) as c:
        await c.instance_members.get(instanceId=IID)
        server.faults = STALLED
        with pytest.raises(am.TransportError) as info:
            await c.instance_members.get(instanceId=IID)
    assert "30 s" not in str(info.value)
    assert "reading data" in str(info.value)
