"""Each injected fault does what it says, and the same seed gives the same faults."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asyncmembers.testing import FakeLosantServer, FaultKind, Faults
from asyncmembers.testing._faults import FaultPlan, TokenBucket
from tests import schemas
from tests._shared import LOOP_CLOCK_SLACK

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "secret-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def make_server(faults: Faults, seed: int = 0) -> FakeLosantServer:
    return FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, seed=seed
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, server: FakeLosantServer, email: str, **kw: Any
) -> tuple[int, Any]:
    async with http.post(
        f"{server.url}/instances/{IID}/members", json={"email": email, "role": "view"}, **kw
    ) as resp:
        return resp.status, await resp.json()


async def get(
    http: aiohttp.ClientSession, server: FakeLosantServer, **params: str
) -> tuple[int, Any]:
    async with http.get(f"{server.url}/instances/{IID}/members", params=params) as resp:
        return resp.status, await resp.json()


# -- configuration --------------------------------------------------------------------------


def test_faults_default_to_off() -> None:
    faults = Faults()
    assert not faults.random
    assert faults.latency == faults.rate_limit == 0
    assert faults.rate_limit_burst is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency": -0.1},
        {"latency": math.inf},
        {"error_rate": 1.5},
        {"error_rate": -0.1},
        {"stall_rate": math.nan},
        {"rate_limit": -1},
        {"rate_limit": 10, "rate_limit_burst": 0.5},
        {"stall_seconds": -1},
        {"error_rate": 0.6, "drop_after_commit_rate": 0.6},
    ],
)
def test_invalid_faults_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="Faults"):
        Faults(**kwargs)


def test_token_bucket_says_how_long_until_a_token_is_free() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=100.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == pytest.approx(0.5)
    assert bucket.take(100.25) == pytest.approx(0.25)
    assert bucket.take(100.5) == 0.0  # refilled at 2 per second
    assert [TokenBucket.retry_after(w) for w in (0.01, 1.0, 1.2, 3.99)] == [1, 1, 2, 4]


def test_fault_plan_counts_repeats_of_the_same_request() -> None:
    faults = Faults(error_rate=0.5)
    one, other = FaultPlan(faults, seed=3), FaultPlan(faults, seed=3)
    seq = [one.decide("POST", "/p", b"a") for _ in range(30)]
    # Interleaving other requests does not change what the repeats of b"a" meet.
    mixed = []
    for i in range(30):
        other.decide("POST", "/p", str(i).encode())
        mixed.append(other.decide("POST", "/p", b"a"))
    assert seq == mixed
    assert len({d is None for d in seq}) == 2  # both outcomes occur: n advances the draw


# -- each fault -----------------------------------------------------------------------------


async def test_error_rate_answers_5xx_and_applies_nothing(http) -> None:
    async with make_server(Faults(error_rate=1.0)) as server:
        statuses = set()
        for i in range(40):
            status, body = await post(http, server, f"u{i}@x.io")
            schemas.validate(body, schemas.ERROR)
            statuses.add(status)
        get_status, body = await get(http, server)
        schemas.validate(body, schemas.ERROR)
        assert server.members(IID) == []
        assert server.stats.posts_applied == 0
        assert server.stats.faults[FaultKind.ERROR] == 41
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1
    assert get_status in {500, 502, 503, 504}


async def test_partial_error_rate_applies_exactly_the_answered_posts(http) -> None:
    async with make_server(Faults(error_rate=0.5), seed=11) as server:
        ok = [i for i in range(60) if (await post(http, server, f"u{i}@x.io"))[0] == 200]
        assert 0 < len(ok) < 60
        assert sorted(m["email"] for m in server.members(IID)) == sorted(f"u{i}@x.io" for i in ok)
        assert server.stats.faults[FaultKind.ERROR] == 60 - len(ok)


async def test_rate_limit_answers_429_with_retry_after_once_the_bucket_is_empty(http) -> None:
    async with make_server(Faults(rate_limit=0.25, rate_limit_burst=2)) as server:
        assert (await post(http, server, "a@x.io"))[0] == 200
        assert (await get(http, server))[0] == 200
        async with http.post(
            f"{server.url}/instances/{IID}/members", json={"email": "b@x.io", "role": "view"}
        ) as resp:
            body = await resp.json()
            retry_after = resp.headers.get("Retry-After")
        assert resp.status == 429
        schemas.validate(body, schemas.ERROR)
        assert body["type"] == "TooManyRequests"
        # Empty bucket at 0.25 tokens/s: the next token is (just under) 4 s away.
        assert retry_after == "4"
        assert [m["email"] for m in server.members(IID)] == ["a@x.io"]
        assert server.stats.faults[FaultKind.RATE_LIMIT] == 1
        assert server.stats.by_status[429] == 1


async def test_drop_before_commit_cuts_the_connection_and_applies_nothing(http) -> None:
    async with make_server(Faults(drop_before_commit_rate=1.0)) as server:
        with pytest.raises(DISCONNECTED):
            await post(http, server, "a@x.io")
        assert server.members(IID) == []
        assert server.stats.posts_applied == 0
        assert server.stats.faults[FaultKind.DROP_BEFORE_COMMIT] == 1
        with pytest.raises(DISCONNECTED):
            await get(http, server)  # GETs are cut too (aiohttp retries a GET once itself)
        assert not server.stats.by_status  # no answer was ever sent


async def test_drop_after_commit_applies_then_cuts_the_connection(http) -> None:
    async with make_server(Faults(drop_after_commit_rate=1.0)) as server:
        with pytest.raises(DISCONNECTED):
            await post(http, server, "a@x.io")
        assert [m["email"] for m in server.members(IID)] == ["a@x.io"]
        assert server.stats.posts_applied == 1
        assert server.stats.faults[FaultKind.DROP_AFTER_COMMIT] == 1
        # A client that blindly retries now learns the member exists.
        server.faults = Faults()
        status, body = await post(http, server, "a@x.io")
        assert (status, body["type"]) == (400, "Validation")
        assert "already a member" in body["message"]


async def test_latency_delays_every_request(http) -> None:
    latency = 0.1
    async with make_server(Faults(latency=latency)) as server:
        loop = asyncio.get_running_loop()
        for call in (lambda: get(http, server), lambda: post(http, server, "a@x.io")):
            started = loop.time()
            status, _ = await call()
            assert status == 200
            assert loop.time() - started >= latency - LOOP_CLOCK_SLACK


async def test_stall_trips_a_client_timeout_and_ends_when_the_server_closes(http) -> None:
    server = make_server(Faults(stall_rate=1.0, stall_seconds=3600))
    await server.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await post(http, server, "a@x.io", timeout=aiohttp.ClientTimeout(total=0.2))
        assert server.stats.faults[FaultKind.STALL] == 1
    finally:
        async with asyncio.timeout(30):  # liveness guard: far below the hour-long stall
            await server.close()
    assert server.members(IID) == []  # the stalled request was cut, never processed


async def test_a_short_stall_then_answers_normally(http) -> None:
    async with make_server(Faults(stall_rate=1.0, stall_seconds=0.05)) as server:
        started = asyncio.get_running_loop().time()
        status, _ = await post(http, server, "a@x.io")
        assert status == 200
        assert asyncio.get_running_loop().time() - started >= 0.05 - LOOP_CLOCK_SLACK
        assert len(server.members(IID)) == 1


# -- reproducibility ------------------------------------------------------------------------

MIXED = Faults(error_rate=0.3, drop_before_commit_rate=0.15, drop_after_commit_rate=0.15)
ROWS = [f"user{i}@x.io" for i in range(40)]


async def run_rows(
    seed: int, order: list[int], *, concurrent: bool
) -> tuple[dict[int, str], set[str]]:
    """Post ROWS in ``order``; return each row's outcome and the emails that became members."""
    async with (
        make_server(MIXED, seed=seed) as server,
        aiohttp.ClientSession(headers=HEADERS) as http,
    ):

        async def one(i: int) -> tuple[int, str]:
            try:
                status, _ = await post(http, server, ROWS[i])
            except DISCONNECTED:
                return i, "cut"
            return i, str(status)

        if concurrent:
            results = await asyncio.gather(*(one(i) for i in order))
        else:
            results = [await one(i) for i in order]
        return dict(results), {m["email"] for m in server.members(IID)}


async def test_same_seed_same_faults_even_concurrently_in_another_order() -> None:
    in_order = list(range(len(ROWS)))
    shuffled = in_order[:]
    random.Random(7).shuffle(shuffled)
    outcomes, members = await run_rows(5, in_order, concurrent=False)
    assert {"200", "cut"} <= set(outcomes.values())
    assert set(outcomes.values()) & {"500", "502", "503", "504"}
    again, again_members = await run_rows(5, shuffled, concurrent=True)
    assert again == outcomes
    assert again_members == members
    other, _ = await run_rows(6, in_order, concurrent=False)
    assert other != outcomes


async def test_repeats_of_one_request_meet_the_same_sequence_for_the_same_seed() -> None:
    async def sequence(seed: int, **params: str) -> list[int]:
        async with (
            make_server(Faults(error_rate=0.5), seed=seed) as server,
            aiohttp.ClientSession(headers=HEADERS) as http,
        ):
            return [(await get(http, server, **params))[0] for _ in range(24)]

    first = await sequence(1, sortField="role")
    assert 200 in first
    assert set(first) - {200}
    # Flags the server ignores do not change the request's identity.
    assert await sequence(1, sortField="role", _links="true", _embedded="true") == first
    assert await sequence(2, sortField="role") != first
