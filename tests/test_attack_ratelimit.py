"""Hostile tests of bulk_import's rate adaptation, judged from outside by behaviour.

The embedded server's token bucket (``Faults(rate_limit=R, rate_limit_burst=B)``) admits
at most ``B + R * t`` requests over ``t`` seconds (each ``server.faults = ...`` refills
the bucket). A recording subclass of the server timestamps every answer, so a test can
count the requests the server admitted inside a window and compare that with what the
limit would have admitted there ("goodput fraction"). Windows are measured with the
real clock on both sides (a slow machine widens the window and so gives the client more
time, never less), and every threshold is a generous fraction well away from what was
measured.

The first section holds tests that FAIL on the current code (defects, marked as known
and strict: each fails the suite once it passes, so its mark must then go); the second
pins behaviour that was verified to be good.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

import asyncmembers as am
from asyncmembers.bulk import StoppedError
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "attack-ratelimit-token"


class RecordingServer(FakeLosantServer):
    """The embedded server, recording (time, method, status) of every answer.

    ``extra_429(method)`` may return a ``Retry-After`` value (a string; ``""`` for none)
    to answer that request 429 before the server looks at it: a 429 that does not come
    from the token bucket (a proxy, a shared quota, a busy backend).
    """

    def __init__(self, *, extra_429: Callable[[str], str | None] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.log: list[tuple[float, str, int]] = []
        self.extra_429 = extra_429

    async def _serve(self, request: web.Request, process: Any) -> web.Response:
        if self.extra_429 is not None:
            retry_after = self.extra_429(request.method)
            if retry_after is not None:
                if request.method in ("POST", "PATCH"):
                    await request.read()
                headers = {"Retry-After": retry_after} if retry_after else {}
                self.log.append((time.monotonic(), request.method, 429))
                return web.json_response(
                    {"type": "TooManyRequests", "message": "Too many requests"},
                    status=429,
                    headers=headers,
                )
        response = await super()._serve(request, process)
        self.log.append((time.monotonic(), request.method, response.status))
        return response

    def admitted(self, start: float, end: float) -> int:
        """Answers other than 429 sent in [start, end]."""
        return sum(1 for t, _, s in self.log if start <= t <= end and s != 429)

    def refused(self, start: float = 0.0, end: float = float("inf")) -> int:
        return sum(1 for t, _, s in self.log if start <= t <= end and s == 429)


def rows(n: int, prefix: str = "u") -> list[dict[str, str]]:
    return [{"email": f"{prefix}{i}@example.com", "role": "view"} for i in range(n)]


def server(faults: Faults, **kw: Any) -> RecordingServer:
    return RecordingServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, **kw)


async def run_for(
    srv: RecordingServer,
    members: Any,
    *,
    concurrency: int,
    body: Callable[[], Any],
) -> am.BulkResult:
    """Run bulk_import while ``body()`` (a coroutine function) runs; then stop it.

    Returns the (partial) result, after checking the promises that must hold whatever
    the pacing: every row accounted for, no duplicate member, the server's members are
    exactly the rows reported created.
    """
    stop = asyncio.Event()
    async with am.Client(TOKEN, url=srv.url) as client:
        task = asyncio.create_task(
            am.bulk_import(
                client, instanceId=IID, members=members, concurrency=concurrency, stop=stop
            )
        )
        try:
            await body()
        finally:
            stop.set()
        try:
            result = await asyncio.wait_for(task, 30)
        except StoppedError as exc:
            result = exc.result
    assert result is not None
    check_accounts(srv, result)
    return result


def check_accounts(srv: RecordingServer, result: am.BulkResult) -> None:
    assert result.total == result.created + result.updated + result.skipped + result.failed
    emails = [m["email"].lower() for m in srv.members(IID)]
    assert len(emails) == len(set(emails)), "duplicate members on the server"
    assert len(emails) == result.created == srv.stats.posts_applied
    assert result.failed == 0, result.failures_by_type()


async def measure(
    srv: RecordingServer,
    members: Any,
    *,
    concurrency: int,
    after: float,
    seconds: float,
    first: Callable[[], Any] | None = None,
) -> tuple[float, float]:
    """Run the import and return the window it is judged over: ``seconds`` long,
    starting ``after`` seconds after ``first()`` (a coroutine function: an event to
    wait for, a change of the limit) returned, or after the start."""
    window: list[float] = []

    async def body() -> None:
        if first is not None:
            await first()
        await asyncio.sleep(after)
        window.append(time.monotonic())
        await asyncio.sleep(seconds)
        window.append(time.monotonic())

    await run_for(srv, members, concurrency=concurrency, body=body)
    start, end = window
    return start, end


def report(admitted: int, admissible: float, note: str = "") -> None:
    """Print what a window measured (``pytest tests/test_attack_ratelimit.py -s`` shows
    every scenario's figure, the strict xfails' too)."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    print(
        f"\n{test}: {admitted} admitted of {admissible:.0f} admissible "
        f"({admitted / admissible:.0%}){note}"
    )


KNOWN = pytest.mark.xfail(
    strict=True,
    reason=(
        "known, open: stray 429s that cut the first interval leave an estimate far below "
        "the limit, left by doubling within seconds but not within this window"
    ),
)


# ---------------------------------------------------------------------------------------
# Defects the attack found: the fixed ones pass; the open ones are strict xfails (KNOWN:
# one that starts passing fails the suite).
# ---------------------------------------------------------------------------------------


async def test_defect_rate_limit_raised_mid_import_is_not_followed() -> None:
    """The server's limit rises from 50/s to 400/s mid-import; the import stays near 50/s.

    A user whose API quota is raised (or whose other clients go quiet) sees the import
    carry on at the old rate for as long as it runs: measured ~52 rows/s for 24 s after
    the rise to 400/s (13% of what the server admitted over a 1,400-row run; in the 3 s
    window below, 146 requests: 12%). "The rate adapts" only downwards; the window starts a full 1.5 s after
    the rise, time enough to find a limit 8x higher. Expected: at least 40% of it.

    Fixed (the pacer's doubling probe, bucket-aware measurement and in-order rate
    slots; bisecting after a 429): 54% of admissible in this window at 8107ccf,
    74-103% at e182f70.
    """
    async with server(Faults(rate_limit=50.0)) as srv:

        async def first() -> None:
            await asyncio.sleep(1.5)
            srv.faults = Faults(rate_limit=400.0)

        start, end = await measure(
            srv, iter(rows(20_000)), concurrency=32, after=1.5, seconds=3.0, first=first
        )
        admitted = srv.admitted(start, end)
    admissible = 400.0 * (end - start)
    report(admitted, admissible)
    assert admitted >= 0.4 * admissible, (
        f"{admitted} requests admitted in {end - start:.1f} s under a 400/s limit "
        f"({admitted / admissible:.0%} of admissible)"
    )


async def test_defect_small_bucket_settles_far_below_the_limit() -> None:
    """A 300/s limit with a 30-request bucket: the import settles near 39 rows/s.

    Measured here: 117 requests in the 3 s window (13% of admissible); with 400/s,
    bucket 40: ~46 requests/s for 10 s (13%); with 50/s, bucket 1: 8/s (15%). The steady
    rate is about one bucket per second, whatever the limit. A token bucket much smaller than one second's worth is common (leaky-bucket
    limiters have none); the importer treats the bucket as the rate. Expected: at least
    40% of the limit once the start-up 429s are past.

    Fixed (the pacer's doubling probe, bucket-aware measurement and in-order rate
    slots; bisecting after a 429): 66-67% of admissible in this window.
    """
    async with server(Faults(rate_limit=300.0, rate_limit_burst=30.0)) as srv:
        start, end = await measure(srv, iter(rows(20_000)), concurrency=32, after=2.0, seconds=3.0)
        admitted = srv.admitted(start, end)
    admissible = 300.0 * (end - start)
    report(admitted, admissible)
    assert admitted >= 0.4 * admissible, (
        f"{admitted} admitted in {end - start:.1f} s under 300/s, bucket 30 "
        f"({admitted / admissible:.0%} of admissible)"
    )


async def test_defect_concurrency_one_crawls_at_one_row_per_second() -> None:
    """concurrency=1 against a 50/s limit with a 1-request bucket: 1 row per second.

    One 429 at the start (a single worker is faster than 50/s on loopback) and the
    import then sends one request per second for the rest of the run: measured 11 rows
    in 10 s, and 3 in this test's 3 s window: 2% of the 50/s the server admits. A user who lowered concurrency to be gentle
    gets a 50x slower import. Expected: at least 30% of the limit.

    Fixed: the first POST's 429 let nothing through (the read of existing members had
    taken the bucket's one token), and the rate fell to half the concurrency taken as a
    rate, 0.5/s; now it starts from 8/s and doubles: 36% in this window (3 of 3 runs).
    """
    async with server(Faults(rate_limit=50.0, rate_limit_burst=1.0)) as srv:
        start, end = await measure(srv, iter(rows(5_000)), concurrency=1, after=1.5, seconds=3.0)
        admitted = srv.admitted(start, end)
    admissible = 50.0 * (end - start)
    report(admitted, admissible)
    assert admitted >= 0.3 * admissible, (
        f"{admitted} admitted in {end - start:.1f} s under 50/s, concurrency 1 "
        f"({admitted / admissible:.0%} of admissible)"
    )


async def test_defect_low_limit_tiny_bucket_one_row_per_second_and_most_requests_429() -> None:
    """A 5/s limit with a 1-request bucket, concurrency 16: 1 row/s, most requests 429.

    Measured over 8 s: 8 rows created, 23 of 31 requests answered 429 (74%), 19% of what
    the server admits (over 15 s: 16 rows, 23 429s, 21%). The importer both under-uses
    the limit fivefold and keeps hitting it (429 waves at 0, 1 and 2 s). With
    concurrency 4 the same server gets 2 rows/s (39%). Expected: at least 40% of the
    limit, and 429s at most a third of the requests in the window.

    Fixed (the pacer's doubling probe, bucket-aware measurement and in-order rate
    slots; bisecting after a 429): 48-52% of admissible in this window, 7-8%
    of requests 429.
    """
    async with server(Faults(rate_limit=5.0, rate_limit_burst=1.0)) as srv:
        start, end = await measure(srv, iter(rows(500)), concurrency=16, after=1.5, seconds=5.0)
        admitted = srv.admitted(start, end)
        refused = srv.refused(start, end)
    admissible = 5.0 * (end - start)
    share = refused / max(1, refused + admitted)
    report(admitted, admissible, f", {refused} answered 429 ({share:.0%})")
    assert admitted >= 0.4 * admissible and share <= 0.34, (
        f"{admitted} admitted in {end - start:.1f} s under 5/s "
        f"({admitted / admissible:.0%} of admissible), {refused} answered 429 ({share:.0%})"
    )


@KNOWN
async def test_defect_a_few_spurious_429s_cut_the_rate_for_good() -> None:
    """Three stray 429s (not from the limit) early on leave the import far below the limit.

    The server admits 300/s; three of its first POSTs are answered 429 with
    ``Retry-After: 1`` by something other than the bucket (a proxy, a brief shared-quota
    blip) and nothing else is ever refused. Measured here: 67 requests in the 3 s window
    (7% of admissible), although nothing was refused in it; with 2% stray 429s
    throughout: ~13 rows/s for 20 s (5.5%). Once the strays are over the import should
    go back to the limit, but it stays at a small fraction of it. Expected: at least 40% of the limit
    in a window starting 2 s after the last stray 429.
    """
    strays = {20, 45, 70}
    seen = {"posts": 0}
    last_stray: list[float] = []
    strays_over = asyncio.Event()

    def extra_429(method: str) -> str | None:
        if method != "POST":
            return None
        seen["posts"] += 1
        if seen["posts"] in strays:
            last_stray.append(time.monotonic())
            if len(last_stray) == len(strays):
                strays_over.set()
            return "1"
        return None

    async with server(Faults(rate_limit=300.0), extra_429=extra_429) as srv:
        start, end = await measure(
            srv, iter(rows(20_000)), concurrency=16, after=2.0, seconds=3.0, first=strays_over.wait
        )
        admitted = srv.admitted(start, end)
        assert (
            srv.refused(start, end) == 0
        )  # nothing refused in the window: the limit was never hit
    admissible = 300.0 * (end - start)
    report(admitted, admissible)
    assert admitted >= 0.4 * admissible, (
        f"{admitted} admitted in {end - start:.1f} s under 300/s after 3 stray 429s "
        f"({admitted / admissible:.0%} of admissible)"
    )


async def test_defect_input_slower_than_the_limit_then_fast_stays_slow() -> None:
    """Rows arrive at 20/s for 2 s, then all at once: the import never reaches the limit.

    Against the same server (200/s, bucket 20) an input that starts slow (a paginated
    export, a producer warming up) then speeds up is imported at ~30 rows/s for the rest
    of the run: measured 86 requests in the 3 s window (14% of admissible), 15% over
    16 s after the speed-up. (With the default bucket, 200, the same input settles at
    ~116/s, 58%, where a fast input from the start reaches ~190/s.) Expected: at
    least 40% of the limit, from 2 s after the input speeds up.

    Fixed (the pacer's doubling probe, bucket-aware measurement and in-order rate
    slots; bisecting after a 429): 51-53% of admissible in this window.
    """
    fast = asyncio.Event()

    async def source() -> AsyncIterator[dict[str, str]]:
        for i in range(40):
            await asyncio.sleep(0.05)
            yield {"email": f"slow{i}@example.com", "role": "view"}
        fast.set()
        for i in range(20_000):
            yield {"email": f"fast{i}@example.com", "role": "view"}

    async with server(Faults(rate_limit=200.0, rate_limit_burst=20.0)) as srv:
        start, end = await measure(
            srv, source(), concurrency=16, after=2.0, seconds=3.0, first=fast.wait
        )
        admitted = srv.admitted(start, end)
    admissible = 200.0 * (end - start)
    report(admitted, admissible)
    assert admitted >= 0.4 * admissible, (
        f"{admitted} admitted in {end - start:.1f} s under 200/s after a slow start "
        f"({admitted / admissible:.0%} of admissible)"
    )


# ---------------------------------------------------------------------------------------
# Verified good behaviour (these pass; they pin it).
# ---------------------------------------------------------------------------------------


async def test_good_limit_dropped_mid_import_is_followed() -> None:
    """400/s -> 50/s mid-import: the import follows, with few 429s and nothing lost.

    Measured (1000 rows): 82% of admissible over the run, 4.3% of requests 429.
    """
    async with server(Faults(rate_limit=400.0)) as srv:
        async with am.Client(TOKEN, url=srv.url) as client:

            async def switch() -> None:
                await asyncio.sleep(0.6)
                srv.faults = Faults(rate_limit=50.0)

            switcher = asyncio.create_task(switch())
            result = await am.bulk_import(client, instanceId=IID, members=rows(600), concurrency=32)
            await switcher
        check_accounts(srv, result)
        refused = srv.refused()
        total = len(srv.log)
    assert result.created == 600
    assert refused <= 0.15 * total, f"{refused} of {total} requests answered 429"


async def test_good_rate_limit_mixed_with_errors_and_latency() -> None:
    """200/s limit, 5% 5xx, 20 ms latency: every row created once, few 429s.

    Measured (1000 rows, concurrency 32): 91% of admissible, 2.5% of requests 429.
    """
    faults = Faults(rate_limit=200.0, error_rate=0.05, latency=0.02)
    async with server(faults, seed=7) as srv:
        async with am.Client(TOKEN, url=srv.url) as client:
            result = await am.bulk_import(client, instanceId=IID, members=rows(500), concurrency=32)
        check_accounts(srv, result)
        refused = srv.refused()
        total = len(srv.log)
    assert result.created == 500
    assert refused <= 0.15 * total, f"{refused} of {total} requests answered 429"


async def test_good_spurious_429s_without_retry_after_lose_nothing() -> None:
    """Random 429s without Retry-After on 3% of POSTs: every row still created, once."""
    rng = random.Random(3)

    def extra_429(method: str) -> str | None:
        return "" if method == "POST" and rng.random() < 0.03 else None

    async with server(Faults(), extra_429=extra_429) as srv:
        async with am.Client(TOKEN, url=srv.url) as client:
            result = await am.bulk_import(client, instanceId=IID, members=rows(60), concurrency=8)
        check_accounts(srv, result)
        assert srv.refused() > 0
    assert result.created == 60


async def test_good_retry_after_0_is_a_short_pause_not_a_collapse() -> None:
    """A 200/s limiter that answers 429 with ``Retry-After: 0`` ("retry now"; a date
    already past reads the same). Every 429 began an episode of its own, measured over
    milliseconds with nothing let through, and the halved rate fell to ~1 request a
    second: 0.6% of the limit 3-9 s in (helper h15's attack). Now each 429 pauses the
    import for at least 0.1 s."""
    tokens = {"n": 10.0, "t": time.monotonic()}

    def limiter(method: str) -> str | None:
        now = time.monotonic()
        tokens["n"] = min(10.0, tokens["n"] + (now - tokens["t"]) * 200.0)
        tokens["t"] = now
        if tokens["n"] >= 1.0:
            tokens["n"] -= 1.0
            return None
        return "0"

    async with server(Faults(), extra_429=limiter) as srv:
        start, end = await measure(srv, iter(rows(20_000)), concurrency=32, after=3.0, seconds=3.0)
        admitted = srv.admitted(start, end)
    report(admitted, 200.0 * (end - start))
    share = admitted / (200.0 * (end - start))
    assert share >= 0.5, f"{share:.0%} of a 200/s limit admitted 3-6 s in, Retry-After: 0"
