"""The clients under test; each runner executes in its own child process.

A runner takes a dict of parameters and returns a dict of measurements. Measured windows
are marked with ``time.monotonic()`` (one clock for all processes, so the server's CPU in
the same window can be looked up) and ``time.process_time()`` (this process's CPU, every
thread included).

Common parameters: ``url``, ``instance`` (measured), ``warm_instance`` (warm-up, so that
lazily built caches, imports and the first connections are not measured),
``concurrency``, ``seconds`` (input stops after this long), ``max_rows``, ``warm_rows``,
``tag`` (makes the e-mail addresses of a run unique).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._profile import Profiled
from ._serverproc import TOKEN

__all__ = ["RUNNERS", "member_rows"]

ACCEPT_VERSION = "^1.29.3"
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def member_rows(tag: str, *, limit: int, deadline: float | None = None) -> Iterator[dict[str, str]]:
    """Unique members ``{"email", "role"}``, lazily; stops at ``limit`` or ``deadline``."""
    for i in range(limit):
        if deadline is not None and time.monotonic() >= deadline:
            return
        yield {"email": f"user{i}@{tag}.bench.example.com", "role": "view"}


def _bulk_import() -> Callable[..., Awaitable[Any]]:
    try:
        from asyncmembers import bulk_import  # type: ignore[attr-defined]
    except ImportError:
        from asyncmembers.bulk import bulk_import
    return bulk_import  # type: ignore[no-any-return]


class _Window:
    """Marks the measured window: wall (monotonic) and this process's CPU."""

    def __enter__(self) -> _Window:
        gc.collect()
        self.t0 = time.monotonic()
        self.c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.c1 = time.process_time()
        self.t1 = time.monotonic()

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "t0": self.t0,
            "t1": self.t1,
            "wall": self.t1 - self.t0,
            "cpu": self.c1 - self.c0,
            **extra,
        }


def _steady_rps(times: list[float], t0: float, p: dict[str, Any]) -> float | None:
    """Completions per second in steady state, or None when not asked for.

    The window starts ``steady["skip"]`` s after the start (past the first round trips)
    and spans a whole number of ``steady["period"]`` (the server latency), ending by the
    time the input stops, so that batches of completions are not cut in half.
    """
    st = p.get("steady")
    if not st:
        return None
    a = t0 + st["skip"]
    k = int((t0 + p["seconds"] - a) / st["period"])
    if k < 3:
        return None
    b = a + k * st["period"]
    return sum(1 for t in times if a <= t < b) / (b - a)


def _stalls(times: list[float], p: dict[str, Any], threshold: float = 0.3) -> dict[str, float] | None:
    """Gaps of at least ``threshold`` s between completions (pauses), if asked for."""
    if not p.get("timeline") or len(times) < 2:
        return None
    times = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a >= threshold]
    return {"count": len(gaps), "seconds": sum(gaps)}


def _first_error(failures: list[Any]) -> str | None:
    if not failures:
        return None
    err = failures[0].error
    return f"{type(err).__name__}: {getattr(err, 'message', err)}"


# -- asyncmembers.bulk_import over loopback ------------------------------------------------


async def _bulk_async(p: dict[str, Any]) -> dict[str, Any]:
    from asyncmembers import Client

    bulk_import = _bulk_import()
    c = p["concurrency"]
    async with Client(auth_token=TOKEN, url=p["url"]) as client:
        if p.get("warm_rows"):
            await bulk_import(
                client,
                instanceId=p["warm_instance"],
                members=member_rows("warm-" + p["tag"], limit=p["warm_rows"]),
                concurrency=c,
            )
        times: list[float] = []
        record = p.get("steady") or p.get("timeline")
        on_outcome = (lambda _o: times.append(time.monotonic())) if record else None
        prof = Profiled(p.get("profile"))
        with _Window() as w, prof:
            result = await bulk_import(
                client,
                instanceId=p["instance"],
                members=member_rows(p["tag"], limit=p["max_rows"], deadline=w.t0 + p["seconds"]),
                concurrency=c,
                on_outcome=on_outcome,
            )
    return w.result(
        steady_rps=_steady_rps(times, w.t0, p),
        stalls=_stalls(times, p),
        rows=result.total,
        ok=result.created,
        skipped=result.skipped,
        failed=len(result.failures),
        first_error=_first_error(result.failures),
        requests=getattr(result, "requests", None),
        n429=getattr(result, "rate_limited", None),
        profile=prof.summary(),
    )


# -- raw aiohttp: the best plain loop we can write ----------------------------------------


async def _raw_async(p: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    import attrs

    c = p["concurrency"]
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Accept-Version": ACCEPT_VERSION,
    }
    client_headers = {**headers, "User-Agent": "asyncmembers/0.1 (+aiohttp)"}
    # The fixed set of workers bounds concurrency; the pool needs no limit of its own.
    connector = aiohttp.TCPConnector(limit=0)
    session_headers = None if p.get("like_client") else headers
    async with aiohttp.ClientSession(connector=connector, headers=session_headers) as session:

        times: list[float] = []
        record = bool(p.get("steady"))

        async def drive(instance: str, rows: Iterator[dict[str, str]]) -> Counter[int]:
            url = f"{p['url']}/instances/{instance}/members"
            statuses: Counter[int] = Counter()

            async def worker() -> None:
                for row in rows:  # one shared iterator: each row is taken once
                    async with session.post(url, data=_dumps(row).encode()) as resp:
                        json.loads(await resp.read())
                        statuses[resp.status] += 1
                    if record:
                        times.append(time.monotonic())

            async def worker_like_client() -> None:
                # aiohttp called the way asyncmembers' session wrapper calls it: headers and
                # a per-attempt timeout (the time left) on every request, headers read.
                loop = asyncio.get_running_loop()
                base_timeout = aiohttp.ClientTimeout(total=30.0)
                deadline = loop.time() + 120.0
                for row in rows:
                    timeout = attrs.evolve(base_timeout, total=deadline - loop.time())
                    async with session.request(
                        "POST", url, params=None, data=_dumps(row).encode(),
                        headers=client_headers, timeout=timeout,
                    ) as resp:
                        status = resp.status
                        raw = await resp.read()
                        _ = resp.headers
                    json.loads(raw)
                    statuses[status] += 1

            if p.get("like_client"):
                worker = worker_like_client

            await asyncio.gather(*(worker() for _ in range(c)))
            return statuses

        if p.get("warm_rows"):
            await drive(p["warm_instance"], member_rows("warm-" + p["tag"], limit=p["warm_rows"]))
        prof = Profiled(p.get("profile"))
        with _Window() as w, prof:
            statuses = await drive(
                p["instance"],
                member_rows(p["tag"], limit=p["max_rows"], deadline=w.t0 + p["seconds"]),
            )
    total = sum(statuses.values())
    return w.result(
        steady_rps=_steady_rps([t for t in times if t >= w.t0], w.t0, p),
        rows=total,
        ok=statuses[200],
        failed=total - statuses[200],
        requests=total,
        n429=statuses[429],
        profile=prof.summary(),
    )


# -- a bare worker pool calling client.instance_members.post (the client, no importer) ----


async def _client_pool_async(p: dict[str, Any]) -> dict[str, Any]:
    from asyncmembers import Client, LosantError

    c = p["concurrency"]
    async with Client(auth_token=TOKEN, url=p["url"]) as client:

        async def drive(instance: str, rows: Iterator[dict[str, str]]) -> tuple[int, int]:
            ok = failed = 0

            async def worker() -> None:
                nonlocal ok, failed
                for row in rows:
                    try:
                        await client.instance_members.post(instanceId=instance, member=row)
                        ok += 1
                    except LosantError:
                        failed += 1

            await asyncio.gather(*(worker() for _ in range(c)))
            return ok, failed

        if p.get("warm_rows"):
            await drive(p["warm_instance"], member_rows("warm-" + p["tag"], limit=p["warm_rows"]))
        with _Window() as w:
            ok, failed = await drive(
                p["instance"],
                member_rows(p["tag"], limit=p["max_rows"], deadline=w.t0 + p["seconds"]),
            )
    return w.result(rows=ok + failed, ok=ok, failed=failed, requests=ok + failed)


# -- a naive fixed-concurrency client that retries 429s with tenacity, each worker alone ----


class _RateLimited(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"429, Retry-After {retry_after}")
        self.retry_after = retry_after


async def _naive_async(p: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

    def wait_retry_after(rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _RateLimited) and exc.retry_after is not None:
            return exc.retry_after
        return 1.0

    c = p["concurrency"]
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Accept-Version": ACCEPT_VERSION,
    }
    statuses: Counter[int] = Counter()
    times: list[float] = []
    gave_up = 0
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), headers=headers
    ) as session:
        url = f"{p['url']}/instances/{p['instance']}/members"

        async def post_one(row: dict[str, str]) -> None:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RateLimited),
                wait=wait_retry_after,
                stop=stop_after_attempt(30),
                reraise=True,
            ):
                with attempt:
                    async with session.post(url, data=_dumps(row).encode()) as resp:
                        body = await resp.read()
                        statuses[resp.status] += 1
                        if resp.status == 429:
                            value = resp.headers.get("Retry-After")
                            raise _RateLimited(float(value) if value else None)
                        json.loads(body)
                        times.append(time.monotonic())

        with _Window() as w:
            rows = member_rows(p["tag"], limit=p["max_rows"], deadline=w.t0 + p["seconds"])

            async def worker() -> None:
                nonlocal gave_up
                for row in rows:
                    try:
                        await post_one(row)
                    except _RateLimited:
                        gave_up += 1

            await asyncio.gather(*(worker() for _ in range(c)))
    requests = sum(statuses.values())
    return w.result(
        stalls=_stalls(times, p),
        rows=requests - statuses[429] + gave_up,
        ok=statuses[200],
        failed=requests - statuses[429] - statuses[200] + gave_up,
        requests=requests,
        n429=statuses[429],
    )


# -- the official synchronous client, losant-rest (requests) -------------------------------


def _official(p: dict[str, Any]) -> dict[str, Any]:
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # never route loopback via a proxy
    from losant_rest import Client
    from losant_rest.losant_error import LosantError

    client = Client(auth_token=TOKEN, url=p["url"])
    threads = p["threads"]

    def drive(instance: str, rows: Iterator[dict[str, str]]) -> tuple[int, int]:
        lock = threading.Lock()

        def worker() -> tuple[int, int]:
            ok = failed = 0
            while True:
                with lock:
                    row = next(rows, None)
                if row is None:
                    return ok, failed
                try:
                    client.instance_members.post(instanceId=instance, member=row)
                    ok += 1
                except LosantError:
                    failed += 1

        if threads <= 1:
            return worker()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            done = [f.result() for f in [pool.submit(worker) for _ in range(threads)]]
        return sum(d[0] for d in done), sum(d[1] for d in done)

    if p.get("warm_rows"):
        drive(p["warm_instance"], member_rows("warm-" + p["tag"], limit=p["warm_rows"]))
    with _Window() as w:
        ok, failed = drive(
            p["instance"], member_rows(p["tag"], limit=p["max_rows"], deadline=w.t0 + p["seconds"])
        )
    return w.result(rows=ok + failed, ok=ok, failed=failed, requests=ok + failed)


# -- memory: a streamed import of N rows, over loopback or the instant transport ----------


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _memory_async(p: dict[str, Any]) -> dict[str, Any]:
    import resource

    from asyncmembers import Client

    from ._instant import InstantSession

    bulk_import = _bulk_import()
    c = p["concurrency"]
    instant = p["transport"] == "instant"
    session = InstantSession() if instant else None
    url = "http://127.0.0.1:9" if instant else p["url"]
    async with Client(auth_token=TOKEN, url=url, session=session) as client:  # type: ignore[arg-type]
        await bulk_import(
            client,
            instanceId=p["warm_instance"],
            members=member_rows("warm-" + p["tag"], limit=p["warm_rows"]),
            concurrency=c,
        )
        gc.collect()
        base_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with _Window() as w:
            result = await bulk_import(
                client,
                instanceId=p["instance"],
                members=member_rows(p["tag"], limit=p["rows"]),
                concurrency=c,
            )
    return w.result(
        rows=result.total,
        ok=result.created,
        failed=len(result.failures),
        first_error=_first_error(result.failures),
        base_mb=base_mb,
        rss_end_mb=_rss_now_mb(),
    )


# -- scheduling: the importer's machinery vs bare loops, all on the instant transport ------


async def _pool_queue(rows: Iterator[dict[str, str]], c: int, work: Callable[[Any], Awaitable[Any]]) -> int:
    """A bare pool of ``c`` workers fed from a bounded queue; counts failures."""
    queue: asyncio.Queue[dict[str, str] | None] = asyncio.Queue(maxsize=2 * c)
    failed = 0

    async def producer() -> None:
        for row in rows:
            await queue.put(row)
        for _ in range(c):
            await queue.put(None)

    async def worker() -> None:
        nonlocal failed
        while (row := await queue.get()) is not None:
            try:
                await work(row)
            except Exception:
                failed += 1

    await asyncio.gather(producer(), *(worker() for _ in range(c)))
    return failed


async def _gather_sem(rows: Iterator[dict[str, str]], c: int, work: Callable[[Any], Awaitable[Any]]) -> int:
    """One task per row, a semaphore of ``c``; counts failures."""
    sem = asyncio.Semaphore(c)
    failed = 0

    async def one(row: dict[str, str]) -> None:
        nonlocal failed
        async with sem:
            try:
                await work(row)
            except Exception:
                failed += 1

    await asyncio.gather(*(one(row) for row in rows))
    return failed


SCHEDULING_VARIANTS = ("pool_raw", "pool_client", "gather_client", "bulk_import")


async def _scheduling_once(variant: str, n: int, c: int, tag: str) -> dict[str, Any]:
    from asyncmembers import Client

    from ._instant import InstantSession

    bulk_import = _bulk_import()
    instance = "575ec8687ae143cd83dc4a97"
    session = InstantSession()
    async with Client(auth_token=TOKEN, url="http://127.0.0.1:9", session=session) as client:  # type: ignore[arg-type]
        url = f"http://127.0.0.1:9/instances/{instance}/members"
        raw_headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Accept-Version": ACCEPT_VERSION,
        }

        async def raw_work(row: dict[str, str]) -> Any:
            async with session.request("POST", url, data=_dumps(row).encode(), headers=raw_headers) as resp:
                return json.loads(await resp.read())

        async def client_work(row: dict[str, str]) -> Any:
            return await client.instance_members.post(instanceId=instance, member=row)

        rows = member_rows(tag, limit=n)
        failed = 0
        with _Window() as w:
            if variant == "pool_raw":
                failed = await _pool_queue(rows, c, raw_work)
            elif variant == "pool_client":
                failed = await _pool_queue(rows, c, client_work)
            elif variant == "gather_client":
                failed = await _gather_sem(rows, c, client_work)
            elif variant == "bulk_import":
                result = await bulk_import(client, instanceId=instance, members=rows, concurrency=c)
                failed = len(result.failures)
            else:
                raise ValueError(variant)
    return w.result(rows=n, failed=failed, requests=session.requests)


def _scheduling(p: dict[str, Any]) -> dict[str, Any]:
    n, c = p["rows"], p["concurrency"]
    variants = list(p.get("variants", SCHEDULING_VARIANTS))
    # Warm every code path once (imports, cattrs' generated functions) before measuring.
    for v in variants:
        asyncio.run(_scheduling_once(v, min(n, 2000), c, f"warm-{v}"))
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for rep in range(p["reps"]):
        order = variants if rep % 2 == 0 else variants[::-1]
        for v in order:
            runs[v].append(asyncio.run(_scheduling_once(v, n, c, f"{v}-{rep}")))
    return {"runs": runs}


# -- profiled single run of the instant transport ------------------------------------------


def _profile_instant(p: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(_scheduling_once("bulk_import", min(p["rows"], 2000), p["concurrency"], "warm"))
    prof = Profiled(p["profile"])
    with prof:
        out = asyncio.run(_scheduling_once("bulk_import", p["rows"], p["concurrency"], "prof"))
    out["profile"] = prof.summary()
    return out


def _run(coro_fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def runner(p: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(coro_fn(p))

    return runner


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "bulk": _run(_bulk_async),
    "raw": _run(_raw_async),
    "raw_like_client": lambda p: asyncio.run(_raw_async({**p, "like_client": True})),
    "client_pool": _run(_client_pool_async),
    "naive": _run(_naive_async),
    "official": _official,
    "memory": _run(_memory_async),
    "scheduling": _scheduling,
    "profile_instant": _profile_instant,
}
