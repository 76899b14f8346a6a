"""Injected faults on GET, PATCH and DELETE of one member, and their reproducibility."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asyncmembers.testing import FakeLosantServer, FaultKind, Faults
from asyncmembers.testing._faults import FaultPlan
from tests import schemas
from tests._shared import LOOP_CLOCK_SLACK

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "secret-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
NOT_FOUND_MEMBER = {"type": "NotFound", "message": "Member was not found"}
METHODS = ["GET", "PATCH", "DELETE"]


def make_server(faults: Faults, seed: int = 0) -> FakeLosantServer:
    return FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, seed=seed
    )


def seed_members(server: FakeLosantServer, n: int = 1) -> list[str]:
    server.add_members(IID, ({"email": f"u{i}@x.io", "role": "view"} for i in range(n)))
    return [m["userId"] for m in server.members(IID)]


def roles(server: FakeLosantServer) -> dict[str, str]:
    return {m["userId"]: m["role"] for m in server.members(IID)}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=HEADERS) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    server: FakeLosantServer,
    method: str,
    user_id: str,
    role: str = "admin",
    **kw: Any,
) -> tuple[int, Any]:
    body = {"role": role} if method == "PATCH" else None
    async with http.request(
        method, f"{server.url}/instances/{IID}/members/{user_id}", json=body, **kw
    ) as resp:
        answer = await resp.json()
    if resp.status != 200:
        schemas.validate(answer, schemas.ERROR)
    return resp.status, answer


# -- each fault on each method ----------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_error_rate_answers_5xx_and_changes_nothing(http, method) -> None:
    async with make_server(Faults(error_rate=1.0)) as server:
        ids = seed_members(server, 30)
        statuses = {(await call(http, server, method, uid))[0] for uid in ids}
        assert roles(server) == dict.fromkeys(ids, "view")
        assert server.stats.changes_applied == 0
        assert server.stats.faults[FaultKind.ERROR] == 30
    assert statuses <= {500, 502, 503, 504}
    assert len(statuses) > 1


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_partial_error_rate_applies_exactly_the_answered_requests(http, method) -> None:
    async with make_server(Faults(error_rate=0.5), seed=4) as server:
        ids = seed_members(server, 40)
        ok = {uid for uid in ids if (await call(http, server, method, uid))[0] == 200}
        assert 0 < len(ok) < len(ids)
        if method == "PATCH":
            assert roles(server) == {uid: "admin" if uid in ok else "view" for uid in ids}
        else:
            assert set(roles(server)) == set(ids) - ok


@pytest.mark.parametrize("method", METHODS)
async def test_rate_limit_answers_429_with_retry_after_and_changes_nothing(http, method) -> None:
    async with make_server(Faults(rate_limit=0.25, rate_limit_burst=1)) as server:
        first, second = seed_members(server, 2)
        assert (await call(http, server, method, first))[0] == 200
        async with http.request(
            method,
            f"{server.url}/instances/{IID}/members/{second}",
            json={"role": "admin"} if method == "PATCH" else None,
        ) as resp:
            body = await resp.json()
            retry_after = resp.headers.get("Retry-After")
        assert resp.status == 429
        schemas.validate(body, schemas.ERROR)
        assert body["type"] == "TooManyRequests"
        assert retry_after == "4"  # an empty bucket at 0.25 tokens/s
        assert roles(server)[second] == "view"
        assert server.stats.faults[FaultKind.RATE_LIMIT] == 1
        assert server.stats.by_method[method] == 2


@pytest.mark.parametrize("method", METHODS)
async def test_drop_before_commit_cuts_and_changes_nothing(http, method) -> None:
    async with make_server(Faults(drop_before_commit_rate=1.0)) as server:
        (uid,) = seed_members(server)
        with pytest.raises(DISCONNECTED):
            await call(http, server, method, uid)
        assert roles(server) == {uid: "view"}
        assert server.stats.changes_applied == 0
        assert not server.stats.by_status  # no answer was ever sent
        # aiohttp resends a GET or DELETE once by itself on a cut connection; not a PATCH.
        sent = 1 if method == "PATCH" else 2
        assert server.stats.by_method[method] == sent
        assert server.stats.faults[FaultKind.DROP_BEFORE_COMMIT] == sent


async def test_drop_after_commit_on_patch_applies_then_cuts_and_a_resend_is_harmless(http) -> None:
    async with make_server(Faults(drop_after_commit_rate=1.0)) as server:
        uid, other = seed_members(server, 2)
        with pytest.raises(DISCONNECTED):
            await call(http, server, "PATCH", uid)
        assert roles(server) == {uid: "admin", other: "view"}
        assert server.stats.patches_applied == 1
        assert server.stats.by_method["PATCH"] == 1  # aiohttp never resends a PATCH itself
        server.faults = Faults()
        status, member = await call(http, server, "PATCH", uid)
        assert (status, member["role"]) == (200, "admin")
        assert roles(server) == {uid: "admin", other: "view"}


async def test_drop_after_commit_on_delete_applies_then_cuts_and_a_resend_is_404(http) -> None:
    async with make_server(Faults(drop_after_commit_rate=1.0)) as server:
        uid, other = seed_members(server, 2)
        with pytest.raises(DISCONNECTED):
            await call(http, server, "DELETE", uid)
        assert roles(server) == {other: "view"}
        assert server.stats.deletes_applied == 1
        # aiohttp resent the DELETE once; it met a cut after commit too (and found nothing).
        assert server.stats.by_method["DELETE"] == 2
        assert server.stats.faults[FaultKind.DROP_AFTER_COMMIT] == 2
        server.faults = Faults()
        assert await call(http, server, "DELETE", uid) == (404, NOT_FOUND_MEMBER)
        assert roles(server) == {other: "view"}


def _seed_where_first_delete_is_cut_after_commit_and_the_resend_is_not(path: str) -> int:
    faults = Faults(drop_after_commit_rate=0.5)
    for seed in range(1000):
        plan = FaultPlan(faults, seed)
        first, second = plan.decide("DELETE", path, b""), plan.decide("DELETE", path, b"")
        if first is not None and first.kind is FaultKind.DROP_AFTER_COMMIT and second is None:
            return seed
    raise AssertionError("no such seed below 1000")  # pragma: no cover


async def test_aiohttp_resending_a_delete_cut_after_commit_reaches_the_caller_as_404(http) -> None:
    """SPEC section 5: a DELETE applied before the cut can reach the caller as a first 404."""
    uid = "675ed18f7ae143cd83dc4bb7"
    seed = _seed_where_first_delete_is_cut_after_commit_and_the_resend_is_not(
        f"/instances/{IID}/members/{uid}"
    )
    async with make_server(Faults(drop_after_commit_rate=0.5), seed=seed) as server:
        server.add_member(IID, user_id=uid)
        assert await call(http, server, "DELETE", uid) == (404, NOT_FOUND_MEMBER)
        assert roles(server) == {}
        assert server.stats.by_method["DELETE"] == 2
        assert server.stats.deletes_applied == 1
        assert server.stats.faults == {FaultKind.DROP_AFTER_COMMIT: 1}


@pytest.mark.parametrize("method", METHODS)
async def test_stall_trips_a_client_timeout_and_nothing_is_applied_after_close(
    http, method
) -> None:
    server = make_server(Faults(stall_rate=1.0, stall_seconds=3600))
    await server.start()
    try:
        (uid,) = seed_members(server)
        with pytest.raises(asyncio.TimeoutError):
            await call(http, server, method, uid, timeout=aiohttp.ClientTimeout(total=0.2))
        assert server.stats.faults[FaultKind.STALL] >= 1
    finally:
        async with asyncio.timeout(30):  # liveness guard: far below the hour-long stall
            await server.close()
    assert roles(server) == {uid: "view"}
    assert server.stats.changes_applied == 0


@pytest.mark.parametrize("method", METHODS)
async def test_a_short_stall_or_latency_delays_then_answers(http, method) -> None:
    for faults in (Faults(stall_rate=1.0, stall_seconds=0.05), Faults(latency=0.05)):
        async with make_server(faults) as server:
            (uid,) = seed_members(server)
            loop = asyncio.get_running_loop()
            started = loop.time()
            status, _ = await call(http, server, method, uid)
            assert status == 200
            assert loop.time() - started >= 0.05 - LOOP_CLOCK_SLACK
            assert server.stats.changes_applied == (0 if method == "GET" else 1)


# -- reproducibility --------------------------------------------------------------------------

MIXED = Faults(error_rate=0.3, drop_before_commit_rate=0.15, drop_after_commit_rate=0.15)


async def run_changes(
    seed: int, order: list[int], *, concurrent: bool
) -> tuple[dict[tuple[str, int], str], dict[str, str]]:
    """PATCH then DELETE members in ``order``; each request's outcome, and the final roles.

    A fresh connection per request, so aiohttp never resends on its own.
    """
    async with make_server(MIXED, seed=seed) as server:
        ids = seed_members(server, 30)

        async def one(method: str, i: int) -> tuple[tuple[str, int], str]:
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as http:
                try:
                    status, _ = await call(http, server, method, ids[i])
                except DISCONNECTED:
                    return (method, i), "cut"
            return (method, i), str(status)

        outcomes: dict[tuple[str, int], str] = {}
        for method, picked in (("PATCH", order), ("DELETE", [i for i in order if i % 2 == 0])):
            if concurrent:
                outcomes.update(await asyncio.gather(*(one(method, i) for i in picked)))
            else:
                outcomes.update([await one(method, i) for i in picked])
        return outcomes, {f"u{ids.index(uid)}": role for uid, role in roles(server).items()}


async def test_same_seed_same_faults_even_concurrently_in_another_order() -> None:
    in_order = list(range(30))
    shuffled = in_order[:]
    random.Random(3).shuffle(shuffled)
    outcomes, final = await run_changes(7, in_order, concurrent=False)
    assert {"200", "cut"} <= set(outcomes.values())
    assert set(outcomes.values()) & {"500", "502", "503", "504"}
    again = await run_changes(7, shuffled, concurrent=True)
    assert again == (outcomes, final)
    other, _ = await run_changes(8, in_order, concurrent=False)
    assert other != outcomes
