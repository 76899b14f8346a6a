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
import sys
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
#: Modules that must not be loaded before a cold job's timed region starts.
COLD_MODULES = ("aiohttp", "asyncmembers", "uvloop", "orjson", "yarl", "multidict")


def _client_headers() -> dict[str, str]:
    """The headers asyncmembers sends, so the raw loops put the same bytes on the wire."""
    return {
        "Accept": "application/json",
        "Accept-Version": ACCEPT_VERSION,
        "User-Agent": f"asyncmembers/{_package_version()} (+aiohttp)",
        "Authorization": f"Bearer {TOKEN}",
    }


def _package_version() -> str:
    # Read from the source, not imported: a raw job must not load asyncmembers.
    import importlib.util
    import re

    spec = importlib.util.find_spec("asyncmembers")
    assert spec is not None and spec.submodule_search_locations
    path = os.path.join(next(iter(spec.submodule_search_locations)), "_version.py")
    with open(path, encoding="utf-8") as f:
        found = re.search(r"__version__\s*=\s*[\"']([^\"']+)", f.read())
    return found.group(1) if found else "0"


def loop_runner(loop: str) -> Callable[[Any], Any]:
    """``run(coro)`` on the named loop: ``asyncio``, ``uvloop``, or ``cli`` (what the
    asyncmembers command uses: ``asyncmembers._runtime.run``, uvloop when installed)."""
    if loop == "asyncio":
        return asyncio.run
    if loop == "uvloop":
        import uvloop

        def run(coro: Any) -> Any:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(coro)

        return run
    if loop == "cli":
        from asyncmembers._runtime import run as cli_run

        return cli_run
    raise ValueError(f"unknown loop {loop!r}")


def _loop_kind() -> str:
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )


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


def _stalls(
    times: list[float], t0: float, p: dict[str, Any], threshold: float = 0.3
) -> dict[str, float] | None:
    """Gaps of at least ``threshold`` s between completions (pauses), if asked for, and
    when the last one began and ended (seconds after ``t0``)."""
    if not p.get("timeline") or len(times) < 2:
        return None
    times = sorted(times)
    gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a >= threshold]
    last = gaps[-1] if gaps else (t0, t0)
    return {
        "count": len(gaps),
        "seconds": sum(b - a for a, b in gaps),
        "last_from": last[0] - t0,
        "last_to": last[1] - t0,
    }


def _by_input_end(times: list[float], t0: float, p: dict[str, Any]) -> int | None:
    """Completions by the time the input stopped (``seconds`` after ``t0``), if asked for.

    A run whose last 429 pause straddles the end of its input finishes up to a second
    later with as many rows: counted over the whole run, that pause, with nothing left to
    send after it, read as lost goodput (95.6 % against 98.5-98.9 % in traces of the
    rate-limited scenario). Over the input's window both clients are judged alike.
    """
    if not p.get("timeline"):
        return None
    end = t0 + p["seconds"]
    return sum(1 for t in times if t <= end)


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
        stalls=_stalls(times, w.t0, p),
        ok_by_input_end=_by_input_end(times, w.t0, p),
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

    c = p["concurrency"]
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Accept-Version": ACCEPT_VERSION,
    }
    like_client = bool(p.get("like_client"))
    session_kwargs: dict[str, Any] = {"headers": headers}
    if like_client:
        from multidict import CIMultiDict, CIMultiDictProxy

        session_kwargs = {
            "headers": CIMultiDictProxy(CIMultiDict(_client_headers())),
            "timeout": aiohttp.ClientTimeout(total=30.0),
        }
        content_type_json = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
    # The fixed set of workers bounds concurrency; the pool needs no limit of its own.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, **session_kwargs) as session:
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
                # aiohttp called the way asyncmembers' session wrapper calls it today: the
                # constant headers and the attempt timeout live on the session; a POST
                # adds only a prebuilt Content-Type; the body is read whole, then parsed.
                for row in rows:
                    async with session.request(
                        "POST",
                        url,
                        params=None,
                        data=_dumps(row).encode(),
                        headers=content_type_json,
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
        stalls=_stalls(times, w.t0, p),
        ok_by_input_end=_by_input_end(times, w.t0, p),
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


async def _pool_queue(
    rows: Iterator[dict[str, str]], c: int, work: Callable[[Any], Awaitable[Any]]
) -> int:
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


async def _gather_sem(
    rows: Iterator[dict[str, str]], c: int, work: Callable[[Any], Awaitable[Any]]
) -> int:
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


SCHEDULING_VARIANTS = ("gather_raw", "pool_raw", "pool_client", "bulk_import")


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
            async with session.request(
                "POST", url, data=_dumps(row).encode(), headers=raw_headers
            ) as resp:
                return json.loads(await resp.read())

        async def client_work(row: dict[str, str]) -> Any:
            return await client.instance_members.post(instanceId=instance, member=row)

        rows = member_rows(tag, limit=n)
        failed = 0
        with _Window() as w:
            if variant == "gather_raw":
                failed = await _gather_sem(rows, c, raw_work)
            elif variant == "pool_raw":
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
    loops = list(p.get("loops", ("asyncio",)))
    # Warm every code path once (imports, cattrs' generated functions) before measuring.
    for loop in loops:
        for v in variants:
            loop_runner(loop)(_scheduling_once(v, min(n, 2000), c, f"warm-{v}"))
    runs: dict[str, list[dict[str, Any]]] = {f"{v}@{loop}": [] for loop in loops for v in variants}
    for rep in range(p["reps"]):
        for loop in loops if rep % 2 == 0 else loops[::-1]:
            for v in variants if rep % 2 == 0 else variants[::-1]:
                runs[f"{v}@{loop}"].append(
                    loop_runner(loop)(_scheduling_once(v, n, c, f"{v}-{loop}-{rep}"))
                )
    return {"runs": runs}


# -- profiled single run of the instant transport ------------------------------------------


def _profile_instant(p: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(_scheduling_once("bulk_import", min(p["rows"], 2000), p["concurrency"], "warm"))
    prof = Profiled(p["profile"])
    with prof:
        out = asyncio.run(_scheduling_once("bulk_import", p["rows"], p["concurrency"], "prof"))
    out["profile"] = prof.summary()
    return out


def _run(
    coro_fn: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def runner(p: dict[str, Any]) -> dict[str, Any]:
        return loop_runner(p.get("loop", "asyncio"))(coro_fn(p))  # type: ignore[no-any-return]

    return runner


# -- cold jobs: a fresh process adds N rows, the library's import included ------------------
#
# What a user runs: a new process imports its library, opens a session, sends N rows and
# exits. The timed region starts before the import of the client's library (aiohttp for
# the raw loops, asyncmembers, which imports aiohttp, for the others; uvloop and orjson
# where used), so both sides pay for what they load; ``import_cpu`` splits it out. No
# warm-up: first connections and lazily built caches are part of the job, for both.


class _Job:
    """Per-job bookkeeping shared by every cold client: statuses, completion times."""

    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.rows = member_rows(p["tag"], limit=p["rows"])
        self.url = f"{p['url']}/instances/{p['instance']}/members"
        self.statuses: Counter[int] = Counter()
        self.times: list[float] = []
        self.start = 0.0
        self.failed = 0

    def done(self, status: int) -> None:
        self.statuses[status] += 1
        self.times.append(time.monotonic())

    def _steady(self) -> float | None:
        """Completions per second from ``skip`` s in to one period before the last one,
        over a whole number of periods (the server latency); None when too short."""
        st = self.p.get("steady")
        if not st or not self.times:
            return None
        a = self.start + st["skip"]
        k = int((max(self.times) - st["period"] - a) / st["period"])
        if k < 3:
            return None
        b = a + k * st["period"]
        return sum(1 for t in self.times if a <= t < b) / (b - a)

    def result(self, **extra: Any) -> dict[str, Any]:
        end = time.monotonic()
        first = min(self.times) if self.times else None
        total = sum(self.statuses.values())
        out = {
            "job_start": self.start,
            "job_wall": end - self.start,
            "ttfc": None if first is None else first - self.start,
            "steady_rps": self._steady(),
            "rows": total + self.failed,
            "ok": self.statuses[200],
            "failed": total - self.statuses[200] + self.failed,
            "requests": total,
            "loop_used": _loop_kind(),
        }
        out.update(extra)
        return out


async def _job_raw_gather(p: dict[str, Any]) -> dict[str, Any]:
    """What a user writes without a client: gather + a Semaphore, aiohttp's json helpers."""
    import aiohttp

    job = _Job(p)
    job.start = time.monotonic()
    c = p["concurrency"]
    connector = aiohttp.TCPConnector(limit=max(100, c))
    async with aiohttp.ClientSession(headers=_client_headers(), connector=connector) as session:
        sem = asyncio.Semaphore(c)

        async def one(row: dict[str, str]) -> None:
            async with sem, session.post(job.url, json=row) as resp:
                await resp.json()
                job.done(resp.status)

        await asyncio.gather(*(one(row) for row in job.rows))
        return job.result()


async def _job_raw_pool(p: dict[str, Any]) -> dict[str, Any]:
    """The other loop a user writes: a fixed pool of workers over one shared iterator."""
    import aiohttp

    job = _Job(p)
    job.start = time.monotonic()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=_client_headers(), connector=connector) as session:

        async def worker() -> None:
            for row in job.rows:
                async with session.post(job.url, json=row) as resp:
                    await resp.json()
                    job.done(resp.status)

        await asyncio.gather(*(worker() for _ in range(p["concurrency"])))
        return job.result()


async def _job_raw_like_client(p: dict[str, Any]) -> dict[str, Any]:
    """aiohttp called exactly as asyncmembers' session calls it (headers and timeout on the
    session, a prebuilt Content-Type per POST, body read whole then parsed), in a pool."""
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy

    job = _Job(p)
    job.start = time.monotonic()
    content_type = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
    async with aiohttp.ClientSession(
        headers=CIMultiDictProxy(CIMultiDict(_client_headers())),
        timeout=aiohttp.ClientTimeout(total=30.0),
        connector=aiohttp.TCPConnector(limit=512, ttl_dns_cache=300),
    ) as session:

        async def worker() -> None:
            for row in job.rows:
                async with session.request(
                    "POST", job.url, params=None, data=_dumps(row).encode(), headers=content_type
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    _ = resp.headers
                json.loads(raw)
                job.done(status)

        await asyncio.gather(*(worker() for _ in range(p["concurrency"])))
        return job.result()


async def _job_client_pool(p: dict[str, Any]) -> dict[str, Any]:
    """A fixed pool of workers calling client.instance_members.post: the client, no importer."""
    from asyncmembers import Client, LosantError

    job = _Job(p)
    job.start = time.monotonic()
    async with Client(auth_token=TOKEN, url=p["url"]) as client:

        async def worker() -> None:
            for row in job.rows:
                try:
                    await client.instance_members.post(instanceId=p["instance"], member=row)
                except LosantError:
                    job.failed += 1
                else:
                    job.done(200)

        await asyncio.gather(*(worker() for _ in range(p["concurrency"])))
        return job.result()


async def _job_bulk(p: dict[str, Any]) -> dict[str, Any]:
    """bulk_import as the command line runs it (on the loop it picks: see ``loop``)."""
    from asyncmembers import Client, _json

    bulk_import = _bulk_import()
    job = _Job(p)
    job.start = time.monotonic()
    async with Client(auth_token=TOKEN, url=p["url"]) as client:
        result = await bulk_import(
            client,
            instanceId=p["instance"],
            members=job.rows,
            concurrency=p["concurrency"],
            on_outcome=lambda o: job.done(200 if o.kind == "created" else 400),
        )
    out = job.result(json_backend=_json.BACKEND, n429=getattr(result, "rate_limited", None))
    out.update(
        rows=result.total,
        ok=result.created,
        failed=len(result.failures),
        first_error=_first_error(result.failures),
    )
    return out


COLD_JOBS: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "raw_gather": _job_raw_gather,
    "raw_pool": _job_raw_pool,
    "raw_like_client": _job_raw_like_client,
    "client_pool": _job_client_pool,
    "bulk": _job_bulk,
}


def import_library(client: str) -> None:
    """Import what a cold job of ``client`` uses (inside the timed import region)."""
    if client.startswith("raw"):
        import aiohttp  # noqa: F401  (the raw loops' one library)
    else:
        # asyncmembers loads its public names on first use: name what the jobs use, or
        # their import would be timed as part of the run.
        from asyncmembers import Client, LosantError, bulk_import  # noqa: F401


def _cold(p: dict[str, Any]) -> dict[str, Any]:
    cold = not any(m in sys.modules for m in COLD_MODULES)
    gc.collect()
    t0, c0 = time.monotonic(), time.process_time()
    import_library(p["client"])
    run = loop_runner(p["loop"])  # imports uvloop (and asyncmembers._runtime for "cli")
    t_imp, c_imp = time.monotonic(), time.process_time()
    res = run(COLD_JOBS[p["client"]](p))
    c1, t1 = time.process_time(), time.monotonic()
    res.update(
        t0=t0,
        t1=t1,
        wall=t1 - t0,
        cpu=c1 - c0,
        import_cpu=c_imp - c0,
        import_wall=t_imp - t0,
        run_cpu=c1 - c_imp,
        cold=cold,
    )
    return res


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "cold": _cold,
    "bulk": _run(_bulk_async),
    "raw": _run(_raw_async),
    "raw_like_client": lambda p: loop_runner(p.get("loop", "asyncio"))(
        _raw_async({**p, "like_client": True})
    ),
    "client_pool": _run(_client_pool_async),
    "naive": _run(_naive_async),
    "official": _official,
    "memory": _run(_memory_async),
    "scheduling": _scheduling,
    "profile_instant": _profile_instant,
}
