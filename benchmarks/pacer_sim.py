"""``python -m benchmarks.pacer_sim``: the bulk importer's pacer against simulated
rate-limited servers, in virtual time.

The real pacer (``asyncmembers.bulk._pacing.Pacer``) runs on an event loop whose clock
jumps to the next timer whenever nothing is ready, so a minute of import takes a second
or two of CPU and the same figures come out on every run. Workers take the pacer's turn,
ask a server modelled by the embedded server's own ``TokenBucket`` (the same
``Retry-After``), wait a fixed round trip and report the answer, as the engine does.
Each scenario prints, per window of its run, the requests the server let through as a
fraction of what its limit admits there (``rate x seconds``, the bucket not counted) and
the 429s. It found what ``tests/test_attack_ratelimit.py`` shows on the real server: an
estimate that comes out far below the limit (a bucket smaller than a pause's refill, a
429 that was not the limit's, an input slower than the limit) is left only slowly.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from asyncmembers.bulk._pacing import Pacer
from asyncmembers.testing._faults import TokenBucket


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer when nothing is ready."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual = 0.0

    def time(self) -> float:
        return self._virtual

    def _run_once(self) -> None:
        if not self._ready:  # type: ignore[attr-defined]
            live = [h.when() for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
            if live and min(live) > self._virtual:
                self._virtual = min(live)
        super()._run_once()  # type: ignore[misc]


class Server:
    """A token bucket answering 200 or 429 + Retry-After; ``stray(n)``: a 429 anyway."""

    def __init__(self, rate: float, burst: float, stray: Callable[[int], bool]) -> None:
        self.bucket = TokenBucket(rate, burst, 0.0)
        self.stray = stray
        self.n = 0
        self.log: list[tuple[float, int]] = []

    def set_limit(self, rate: float, burst: float, now: float) -> None:
        self.bucket = TokenBucket(rate, burst, now)

    def answer(self, now: float) -> tuple[int, float | None]:
        self.n += 1
        wait = 1.0 if self.stray(self.n) else self.bucket.take(now)
        status = 429 if wait else 200
        self.log.append((now, status))
        return status, (float(TokenBucket.retry_after(wait)) if wait else None)

    def count(self, status: int, start: float, end: float) -> int:
        return sum(1 for t, s in self.log if start <= t < end and s == status)


async def _import(
    server: Server,
    *,
    concurrency: int,
    seconds: float,
    latency: float,
    changes: list[tuple[float, float, float]],
    rows_by: Callable[[float], float] | None,
) -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(concurrency, None)
    produced = 0

    async def worker() -> None:
        nonlocal produced
        while loop.time() < seconds:
            if rows_by is not None:
                # The input is a curve of virtual time, not an event: poll it.
                while produced >= rows_by(loop.time()):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                produced += 1
            if not pacer.try_acquire():
                await pacer.acquire(loop.time() + 3600.0)
            status, retry_after = server.answer(loop.time())
            await asyncio.sleep(latency)
            pacer.release("POST", status, retry_after)

    async def limit_changes() -> None:
        for at, rate, burst in changes:
            await asyncio.sleep(max(0.0, at - loop.time()))
            server.set_limit(rate, burst, loop.time())

    await asyncio.gather(limit_changes(), *(worker() for _ in range(concurrency)))


def simulate(
    rate: float,
    burst: float,
    *,
    concurrency: int = 32,
    seconds: float = 60.0,
    latency: float = 0.002,
    changes: tuple[tuple[float, float, float], ...] = (),
    stray: Callable[[int], bool] = lambda n: False,
    rows_by: Callable[[float], float] | None = None,
) -> Server:
    """Run one simulated import; returns the server, whose log has every answer."""
    server = Server(rate, burst, stray)
    loop = VirtualLoop()
    try:
        loop.run_until_complete(
            _import(
                server,
                concurrency=concurrency,
                seconds=seconds,
                latency=latency,
                changes=list(changes),
                rows_by=rows_by,
            )
        )
    finally:
        loop.close()
    return server


# name, simulate() arguments, windows, the limit in force at a time
SCENARIOS: list[tuple[str, dict[str, Any], list[tuple[float, float]], Callable[[float], float]]] = [
    (
        "200/s, bucket 200 (the benchmark's)",
        {"rate": 200, "burst": 200},
        [(0, 15), (15, 60)],
        lambda t: 200,
    ),
    ("300/s, bucket 30", {"rate": 300, "burst": 30}, [(2, 5), (5, 30), (30, 60)], lambda t: 300),
    (
        "50/s raised to 400/s at 1.5 s",
        {"rate": 50, "burst": 50, "changes": ((1.5, 400, 400),)},
        [(3, 6), (6, 30), (30, 60)],
        lambda t: 400 if t > 1.5 else 50,
    ),
    (
        "400/s dropped to 50/s at 3 s",
        {"rate": 400, "burst": 400, "changes": ((3, 50, 50),)},
        [(0, 3), (4, 15), (15, 60)],
        lambda t: 50 if t > 3 else 400,
    ),
    (
        "50/s, bucket 1, concurrency 1",
        {"rate": 50, "burst": 1, "concurrency": 1},
        [(1.5, 4.5), (5, 30), (30, 60)],
        lambda t: 50,
    ),
    (
        "50/s, bucket 1, concurrency 1, first refused",
        {"rate": 50, "burst": 1, "concurrency": 1, "stray": lambda n: n == 1},
        [(1.5, 4.5), (5, 30), (30, 60)],
        lambda t: 50,
    ),
    (
        "5/s, bucket 1, concurrency 16",
        {"rate": 5, "burst": 1, "concurrency": 16},
        [(1.5, 6.5), (6.5, 30), (30, 60)],
        lambda t: 5,
    ),
    (
        "300/s, three stray 429s early",
        {"rate": 300, "burst": 300, "concurrency": 16, "stray": lambda n: n in (20, 45, 70)},
        [(3, 6), (6, 30), (30, 60)],
        lambda t: 300,
    ),
    (
        "200/s, bucket 20, input 20 rows/s for 2 s",
        {
            "rate": 200,
            "burst": 20,
            "concurrency": 16,
            "rows_by": lambda t: 20 * t if t < 2 else 1e12,
        },
        [(4, 7), (7, 30), (30, 60)],
        lambda t: 200,
    ),
    (
        "300/s, dropped to 30/s at 2 s, back at 5 s",
        {"rate": 300, "burst": 300, "changes": ((2, 30, 30), (5, 300, 300))},
        [(7, 12), (12, 30), (30, 60)],
        lambda t: 30 if 2 < t <= 5 else 300,
    ),
    (
        "1000/s, bucket 1, concurrency 64",
        {"rate": 1000, "burst": 1, "concurrency": 64},
        [(3, 8), (10, 30), (30, 60)],
        lambda t: 1000,
    ),
    (
        "300/s, 2% stray 429s",
        {"rate": 300, "burst": 300, "concurrency": 16, "stray": lambda n: n % 50 == 0},
        [(0, 30), (30, 60)],
        lambda t: 300,
    ),
]


#: The grid: limits (requests/s), buckets as a fraction of a second's worth, concurrency.
GRID_LIMITS = (20.0, 200.0, 600.0, 2000.0)
GRID_BUCKETS = (0.02, 0.1, 0.5, 1.0, 2.0)
GRID_CONCURRENCY = (4, 32)


def pauses(server: Server, start: float, end: float) -> int:
    """Episodes of 429s (one shared pause each) from ``start`` to ``end``."""
    times = [t for t, s in server.log if s == 429 and start <= t < end]
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 0.5)


def grid(seconds: float = 40.0) -> list[tuple[float, float, int, float, float, int]]:
    """Every limit x bucket x concurrency of the grid: (limit, bucket, concurrency, share
    of the limit 2-10 s in, share from 10 s to the end, pauses from 10 s to the end)."""
    rows = []
    for limit in GRID_LIMITS:
        for fraction in GRID_BUCKETS:
            bucket = max(1.0, limit * fraction)
            for concurrency in GRID_CONCURRENCY:
                server = simulate(limit, bucket, concurrency=concurrency, seconds=seconds)
                early = server.count(200, 2, 10) / (limit * 8)
                late = server.count(200, 10, seconds) / (limit * (seconds - 10))
                rows.append((limit, bucket, concurrency, early, late, pauses(server, 10, seconds)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pacer_sim", description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per run")
    ap.add_argument(
        "--grid",
        action="store_true",
        help="also run 40 limits x buckets x concurrency (40 s each, ~25 s) and summarise",
    )
    args = ap.parse_args(argv)
    for name, kwargs, windows, limit_at in SCENARIOS:
        server = simulate(seconds=args.seconds, **kwargs)
        cells = []
        for a, b in windows:
            if a >= args.seconds:
                continue
            b = min(b, args.seconds)
            admissible = limit_at((a + b) / 2) * (b - a)
            ok, refused = server.count(200, a, b), server.count(429, a, b)
            cells.append(f"{a:g}-{b:g} s: {ok / admissible:6.1%}, {refused:3d} 429s")
        print(f"{name:42} " + " | ".join(cells), flush=True)
    if args.grid:
        rows = grid()
        late = [r[4] for r in rows]
        print(
            f"grid of {len(rows)} (limits {GRID_LIMITS}, buckets x{GRID_BUCKETS} of a second's "
            f"worth, concurrency {GRID_CONCURRENCY}): share of the limit 2-10 s in, mean "
            f"{sum(r[3] for r in rows) / len(rows):.1%}; 10-40 s in, mean "
            f"{sum(late) / len(late):.1%}, min {min(late):.1%}, {sum(x < 0.85 for x in late)} "
            f"under 85%; pauses 10-40 s in: {sum(r[5] for r in rows)}"
        )
        for limit, bucket, concurrency, early, late_share, n in rows:
            if late_share < 0.85:
                print(
                    f"  {limit:g}/s, bucket {bucket:g}, concurrency {concurrency}: "
                    f"{early:.0%} 2-10 s in, {late_share:.0%} 10-40 s in, {n} pauses"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
