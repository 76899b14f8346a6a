"""A stalled or rate-limiting server never holds a call past ``RetryPolicy.timeout``.

These are bounds the code guarantees, not performance thresholds: the policy's total
time is 1 s and each assertion allows 3 s (a generous margin for a busy machine). The
per-attempt timeout of the client is left at its default (30 s), so only the policy's
total bound can end the call in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer, FaultKind, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "timeouts-secret-token"
BOUND = 1.0  # RetryPolicy.timeout
MARGIN = 3.0  # asserted upper bound on elapsed time
STALLED = Faults(stall_rate=1.0, stall_seconds=3600.0)

POLICY = am.RetryPolicy(attempts=50, timeout=BOUND, wait_initial=0.01, wait_max=0.05)


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID]) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url, retry=POLICY) as c:
        yield c


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


# -- single calls ---------------------------------------------------------------------------


async def test_stalled_get_ends_within_the_policy_timeout(
    server: FakeLosantServer, client: am.Client
) -> None:
    server.faults = STALLED
    start = time.monotonic()
    with pytest.raises(am.TransportError) as info:
        await client.instance_members.get(instanceId=IID)
    took = elapsed_since(start)
    assert took < MARGIN, took
    assert took >= BOUND * 0.9  # it did wait for the server, up to the bound
    assert info.value.status is None
    assert server.stats.faults[FaultKind.STALL] >= 1


@pytest.mark.parametrize(
    "member",
    [{"email": "stall@example.com", "role": "view"}, {"userId": "a" * 24, "role": "admin"}],
)
async def test_stalled_post_ends_within_the_policy_timeout(
    server: FakeLosantServer, client: am.Client, member: dict[str, str]
) -> None:
    """The POST times out (ambiguous), and the confirming lookups stall too."""
    server.faults = STALLED
    start = time.monotonic()
    with pytest.raises(am.TransportError, match="may have been applied"):
        await client.instance_members.post(instanceId=IID, member=member)
    took = elapsed_since(start)
    assert took < MARGIN, took
    assert server.members(IID) == []


async def test_a_short_per_attempt_timeout_retries_within_the_bound(
    server: FakeLosantServer,
) -> None:
    """Per-attempt timeout 0.2 s: several attempts fit in the bound, none past it."""
    server.faults = STALLED
    async with am.Client(TOKEN, url=server.url, retry=POLICY, timeout=0.2) as c:
        start = time.monotonic()
        with pytest.raises(am.TransportError):
            await c.instance_members.get(instanceId=IID)
        took = elapsed_since(start)
    assert took < MARGIN, took
    assert server.stats.faults[FaultKind.STALL] >= 3  # it retried, within the bound


async def test_post_confirms_and_recovers_when_only_some_attempts_stall(
    server: FakeLosantServer,
) -> None:
    """A stall that does end (after the client gave up on it) applies nothing twice."""
    server.faults = Faults(stall_rate=0.5, stall_seconds=0.6)
    policy = am.RetryPolicy(attempts=20, timeout=10.0, wait_initial=0.01, wait_max=0.05)
    async with am.Client(TOKEN, url=server.url, retry=policy, timeout=0.2) as c:
        for i in range(6):
            await c.instance_members.post(
                instanceId=IID, member={"email": f"s{i}@example.com", "role": "view"}
            )
    await asyncio.sleep(0.8)  # let stalled attempts the client gave up on finish
    assert len(server.members(IID)) == 6
    assert server.stats.posts_applied == 6
    assert server.stats.faults[FaultKind.STALL] > 0


async def test_rate_limit_retry_after_beyond_the_bound_is_not_waited_out(
    server: FakeLosantServer, client: am.Client
) -> None:
    server.faults = Faults(rate_limit=0.2, rate_limit_burst=1.0)  # Retry-After: 5
    await client.instance_members.get(instanceId=IID)  # takes the one token
    start = time.monotonic()
    with pytest.raises(am.RateLimitError) as info:
        await client.instance_members.get(instanceId=IID)
    assert elapsed_since(start) < MARGIN
    assert info.value.retry_after is not None and info.value.retry_after >= 4


# -- bulk import ----------------------------------------------------------------------------


def rows_that_stall_the_server(server: FakeLosantServer, n: int, faults: Faults) -> Iterator[Any]:
    """Rows; pulling the first one switches the server to ``faults``.

    The importer lists the instance once before reading any row, so that list succeeds and
    every POST (and every confirming lookup) meets the faults.
    """
    for i in range(n):
        if i == 0:
            server.faults = faults
        yield {"email": f"row{i}@example.com", "role": "view"}


@pytest.mark.parametrize(("rows", "concurrency"), [(8, 8), (6, 3)])
async def test_bulk_rows_against_a_stalled_server_each_end_within_the_bound(
    server: FakeLosantServer, client: am.Client, rows: int, concurrency: int
) -> None:
    done: list[float] = []
    start = time.monotonic()
    result = await am.bulk_import(
        client,
        instanceId=IID,
        members=rows_that_stall_the_server(server, rows, STALLED),
        concurrency=concurrency,
        on_outcome=lambda _: done.append(elapsed_since(start)),
    )
    took = elapsed_since(start)
    waves = -(-rows // concurrency)  # each worker takes its rows one after another
    assert took < waves * MARGIN, (took, done)
    assert result.total == rows == len(result.failures)
    assert all(isinstance(f.error, am.TransportError) for f in result.failures)
    assert all("may have been applied" in f.error.message for f in result.failures)
    assert server.members(IID) == []


async def test_bulk_rows_waiting_on_a_rate_limit_pause_end_within_the_bound(
    server: FakeLosantServer, client: am.Client
) -> None:
    """A shared 429 pause longer than the bound must not hold a row past it.

    The server admits one request, then answers 429 with ``Retry-After: 5`` (beyond the
    1 s bound but within ``max_retry_after``); every worker waits on the importer's shared
    pause. Each row must still end, failed, within the policy's total time.
    """
    faults = Faults(rate_limit=0.2, rate_limit_burst=1.0)
    done: list[float] = []
    start = time.monotonic()
    result = await am.bulk_import(
        client,
        instanceId=IID,
        members=rows_that_stall_the_server(server, 6, faults),
        concurrency=6,
        on_outcome=lambda _: done.append(elapsed_since(start)),
    )
    took = elapsed_since(start)
    assert took < MARGIN, (took, done)
    assert result.total == 6 == result.created + len(result.failures)
    assert result.created <= 1
    assert all(isinstance(f.error, am.RateLimitError | am.TransportError) for f in result.failures)
