"""The six scenarios. Each measures asyncmembers against a baseline in the same run.

Runs are time-boxed: every client draws rows from the same lazily generated input, which
stops yielding after ``seconds``; the run ends when the rows in flight are done, and
``rows / wall`` is its throughput. Pairs are interleaved (A B, B A, ...) and medians
reported, so that drift on a shared machine hits both sides alike.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._procs import run_client
from ._profile import format_summary, package_us_per_row
from ._report import Figure, Section
from ._serverproc import ServerProcess

__all__ = ["CONFIGS", "SCENARIOS", "Config"]

_MAX_ROWS = 2_000_000
_SATURATED = 0.85  # a process busier than this (CPU s per wall s) is the bottleneck
_MACHINE_SATURATED = 0.90  # all cores together (anyone's processes) busier than this


@dataclass(frozen=True)
class Config:
    mode: str
    # 1. client overhead (no latency)
    overhead_rounds: int
    overhead_seconds: float
    overhead_concurrency: int
    # 2. against the official client (20 ms) and the throughput plot
    official_latency: float
    official_threads: tuple[int, ...]
    official_concurrencies: tuple[int, ...]
    official_seconds: float
    official_reps: int
    # 3. latency-bound efficiency
    eff_latencies: tuple[float, ...]
    eff_concurrencies: tuple[int, ...]
    eff_seconds: float
    eff_reps: int
    # 4. rate-limited server
    rl_limit: float
    rl_seconds: float
    rl_pairs: int
    rl_concurrency: int
    # 5. memory
    mem_instant: tuple[int, ...]
    mem_loopback: tuple[int, ...]
    mem_concurrency: int
    # 6. scheduling overhead
    sched_rows: int
    sched_reps: int
    sched_concurrency: int
    # profiles of the hot path
    profile: bool
    out_dir: str | None


CONFIGS: dict[str, Config] = {
    "smoke": Config(
        mode="smoke",
        overhead_rounds=1, overhead_seconds=0.4, overhead_concurrency=8,
        official_latency=0.02, official_threads=(1, 8), official_concurrencies=(8, 64),
        official_seconds=0.4, official_reps=1,
        eff_latencies=(0.02,), eff_concurrencies=(8,), eff_seconds=0.4, eff_reps=1,
        rl_limit=200.0, rl_seconds=0.5, rl_pairs=1, rl_concurrency=8,
        mem_instant=(1_000, 3_000), mem_loopback=(), mem_concurrency=16,
        sched_rows=1_000, sched_reps=1, sched_concurrency=16,
        profile=False, out_dir=None,
    ),
    "quick": Config(
        mode="quick",
        overhead_rounds=3, overhead_seconds=1.5, overhead_concurrency=32,
        official_latency=0.02, official_threads=(1, 16, 64), official_concurrencies=(64, 256),
        official_seconds=1.5, official_reps=1,
        eff_latencies=(0.02, 0.05, 0.1), eff_concurrencies=(8, 32, 64), eff_seconds=1.2,
        eff_reps=1,
        rl_limit=200.0, rl_seconds=6.0, rl_pairs=1, rl_concurrency=32,
        mem_instant=(10_000, 100_000), mem_loopback=(), mem_concurrency=64,
        sched_rows=20_000, sched_reps=3, sched_concurrency=64,
        profile=False, out_dir="benchmarks/out",
    ),
    "full": Config(
        mode="full",
        overhead_rounds=5, overhead_seconds=3.0, overhead_concurrency=32,
        official_latency=0.02, official_threads=(1, 16, 64),
        official_concurrencies=(1, 16, 64, 128, 256), official_seconds=2.5, official_reps=3,
        eff_latencies=(0.02, 0.05, 0.1), eff_concurrencies=(8, 32, 64, 128),
        eff_seconds=2.0, eff_reps=2,
        rl_limit=200.0, rl_seconds=15.0, rl_pairs=2, rl_concurrency=32,
        mem_instant=(10_000, 100_000, 1_000_000), mem_loopback=(10_000, 100_000),
        mem_concurrency=64,
        sched_rows=100_000, sched_reps=5, sched_concurrency=64,
        profile=True, out_dir="benchmarks",
    ),
}

_tags = itertools.count()


def _tag() -> str:
    return f"r{os.getpid()}x{next(_tags)}"


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def loopback_run(
    srv: ServerProcess,
    kind: str,
    *,
    concurrency: int,
    seconds: float,
    warm_rows: int | None = None,
    threads: int = 0,
    profile: str | None = None,
    steady: dict[str, float] | None = None,
    timeline: bool = False,
) -> dict[str, Any]:
    """One client run in a fresh process against ``srv``, on fresh instances."""
    if warm_rows is None:
        warm_rows = max(50, 2 * concurrency, 2 * threads)
    params = {
        "url": srv.url,
        "instance": srv.new_instance(),
        "warm_instance": srv.new_instance(),
        "concurrency": concurrency,
        "threads": threads,
        "seconds": seconds,
        "max_rows": _MAX_ROWS,
        "warm_rows": warm_rows,
        "tag": _tag(),
        "profile": profile,
        "steady": steady,
        "timeline": timeline,
    }
    res = run_client(kind, params, timeout=seconds + 180.0)
    win = srv.window(res["t0"], res["t1"])
    rows = max(res["rows"], 1)
    res["rps"] = res["rows"] / res["wall"]
    res["cpu_us"] = 1e6 * res["cpu"] / rows
    res["client_util"] = res["cpu"] / res["wall"]
    res["server_cpu"] = win["cpu"]
    res["server_util"] = win["cpu"] / res["wall"]
    res["server_us"] = 1e6 * win["cpu"] / rows
    res["machine_util"] = win["machine"]
    return res


def _check(res: dict[str, Any], label: str, notes: list[str]) -> None:
    if res.get("failed"):
        notes.append(
            f"{label}: {res['failed']} of {res['rows']} rows failed"
            + (f" (first: {res['first_error']})" if res.get("first_error") else "")
        )


def _saturation(res: dict[str, Any]) -> str:
    hot = []
    if res["client_util"] >= _SATURATED:
        hot.append("client CPU")
    if res["server_util"] >= _SATURATED:
        hot.append("server CPU")
    if res["machine_util"] >= _MACHINE_SATURATED:
        hot.append("machine CPU")
    return "+".join(hot)


# -- 1. client overhead ------------------------------------------------------------------


_OVERHEAD_VARIANTS = ("raw", "raw_like_client", "client_pool", "bulk")


def overhead(cfg: Config) -> Section:
    c = cfg.overhead_concurrency
    s = Section(
        "overhead",
        f"1. Client overhead: bulk_import vs raw aiohttp, concurrency {c}, no server latency",
        ["client", "rows/s", "client CPU µs/row", "CPU / raw aiohttp", "client / server / "
         "machine busy", "runs"],
    )
    per: dict[str, list[dict[str, Any]]] = {k: [] for k in _OVERHEAD_VARIANTS}
    with ServerProcess() as srv:
        for rnd in range(cfg.overhead_rounds):
            k = rnd % len(_OVERHEAD_VARIANTS)
            order = _OVERHEAD_VARIANTS[k:] + _OVERHEAD_VARIANTS[:k]
            if rnd % 2:
                order = order[::-1]
            for kind in order:
                res = loopback_run(srv, kind, concurrency=c, seconds=cfg.overhead_seconds)
                _check(res, _label(kind), s.notes)
                per[kind].append(res)

    def per_round(kind: str, fn: Callable[[dict[str, Any], dict[str, Any]], float]) -> float:
        return _median([fn(a, b) for a, b in zip(per[kind], per["raw"], strict=True)])

    for kind in _OVERHEAD_VARIANTS:
        runs = per[kind]
        s.rows.append([
            _label(kind),
            f"{_median([r['rps'] for r in runs]):.0f}",
            f"{_median([r['cpu_us'] for r in runs]):.0f}",
            f"{per_round(kind, lambda a, b: a['cpu_us'] / b['cpu_us']):.2f}×",
            " / ".join(_pct(_median([r[u] for r in runs]))
                       for u in ("client_util", "server_util", "machine_util")),
            str(len(runs)),
        ])
    ratio = per_round("bulk", lambda a, b: a["cpu_us"] / b["cpu_us"])
    s.figures.append(Figure(
        "client CPU per row, bulk_import / raw aiohttp", f"{ratio:.2f}×", "≤ 1.15×", ratio <= 1.15
    ))
    s.figures.append(Figure("rows/s, bulk_import / raw aiohttp",
                            f"{per_round('bulk', lambda a, b: a['rps'] / b['rps']):.2f}×"))

    def step(hi: str, lo: str) -> float:
        return _median([a["cpu_us"] - b["cpu_us"] for a, b in zip(per[hi], per[lo], strict=True)])

    raw_us = _median([r["cpu_us"] for r in per["raw"]])
    steps = [
        ("aiohttp called as asyncmembers calls it (per-request headers and timeout)",
         step("raw_like_client", "raw")),
        ("asyncmembers client layers (resources, session wrapper, retries, models)",
         step("client_pool", "raw_like_client")),
        ("the importer (feeder, queue, pacer, outcomes)", step("bulk", "client_pool")),
    ]
    s.notes.append(
        "where bulk_import's extra CPU per row goes (medians of per-round differences, "
        f"µs/row and % of raw aiohttp's {raw_us:.0f}): "
        + "; ".join(f"{name} {d:+.1f} µs ({100 * d / raw_us:+.1f}%)" for name, d in steps)
    )
    s.notes.append(
        f"{cfg.overhead_rounds} rounds, each running the four clients in rotated order, "
        f"{cfg.overhead_seconds:g} s each, fresh instances; ratios are medians of per-round ratios. "
        "With no latency rows/s is bound by CPU (the server's, or the shared machine's), so "
        "client CPU per row is the figure that tells the clients apart"
    )
    s.data = {"ratio": ratio, "per": per}
    return s


def _label(kind: str) -> str:
    return {"raw": "raw aiohttp", "bulk": "asyncmembers", "official": "losant-rest",
            "naive": "naive+tenacity", "raw_like_client": "raw aiohttp, client's call shape",
            "client_pool": "pool of client.post"}[kind]


# -- 2. against the official client, and the plot ------------------------------------------


def official(cfg: Config) -> Section:
    lat = cfg.official_latency
    s = Section(
        "official",
        f"2. Against the official client (losant-rest), {lat * 1000:.0f} ms server latency",
        ["client", "concurrency", "rows/s (median)", "client CPU µs/row", "client CPU util",
         "server CPU util", "machine busy", "runs"],
    )
    configs: list[tuple[str, int]] = [("official", t) for t in cfg.official_threads]
    configs += [("raw", c) for c in cfg.official_concurrencies]
    configs += [("bulk", c) for c in cfg.official_concurrencies]
    results: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in configs}
    with ServerProcess(faults={"latency": lat}) as srv:
        for rep in range(cfg.official_reps):
            shift = (rep * 3) % len(configs)
            for kind, c in configs[shift:] + configs[:shift]:
                if kind == "official":
                    res = loopback_run(srv, "official", concurrency=1, threads=c,
                                       seconds=cfg.official_seconds)
                else:
                    res = loopback_run(srv, kind, concurrency=c, seconds=cfg.official_seconds)
                _check(res, f"{_label(kind)} c={c}", s.notes)
                results[(kind, c)].append(res)
    med: dict[tuple[str, int], dict[str, float]] = {}
    for (kind, c), runs in results.items():
        med[(kind, c)] = {
            key: _median([r[key] for r in runs])
            for key in ("rps", "cpu_us", "client_util", "server_util", "machine_util")
        }
        m = med[(kind, c)]
        conc = ("sequential" if c == 1 else f"{c} threads") if kind == "official" else str(c)
        s.rows.append([
            _label(kind), conc, f"{m['rps']:.0f}", f"{m['cpu_us']:.0f}",
            _pct(m["client_util"]), _pct(m["server_util"]), _pct(m["machine_util"]),
            str(len(runs)),
        ])
    off_best = max((k for k in med if k[0] == "official"), key=lambda k: med[k]["rps"])
    candidates = [k for k in med if k[0] == "bulk" and 64 <= k[1] <= 256] or [
        k for k in med if k[0] == "bulk"
    ]
    bulk_best = max(candidates, key=lambda k: med[k]["rps"])
    ratio = med[bulk_best]["rps"] / med[off_best]["rps"]
    cpu_ratio = med[bulk_best]["cpu_us"] / med[off_best]["cpu_us"]
    s.figures.append(Figure(
        f"rows/s, bulk_import (c={bulk_best[1]}) / losant-rest best ({_off_name(off_best[1])})",
        f"{ratio:.1f}×", "≥ 5×", ratio >= 5.0,
    ))
    s.figures.append(Figure(
        "client CPU per row, bulk_import / losant-rest (same configs)",
        f"{cpu_ratio:.2f}×", "< 1×", cpu_ratio < 1.0,
    ))
    raw_same = med.get(("raw", bulk_best[1]))
    if raw_same:
        s.figures.append(Figure(
            f"rows/s, bulk_import / raw aiohttp at c={bulk_best[1]}",
            f"{med[bulk_best]['rps'] / raw_same['rps']:.2f}×",
        ))
    s.notes.append(
        "losant-rest opens a new connection for every call (requests.request); its threads "
        "pull rows from one shared iterator. Concurrency for it is the number of threads."
    )
    s.notes.append(
        f"ideal rows/s at concurrency c is c / {lat * 1000:.0f} ms; a run whose server or "
        "client CPU is near 100% is bounded by that process, not by latency"
    )
    curves: dict[str, list[tuple[int, float]]] = {
        "asyncmembers": [], "raw aiohttp": [], "losant-rest (threads)": []
    }
    names = {"bulk": "asyncmembers", "raw": "raw aiohttp", "official": "losant-rest (threads)"}
    for (kind, c), m in med.items():
        curves[names[kind]].append((c, m["rps"]))
    s.data = {"curves": curves, "latency": lat}
    return s


def _off_name(threads: int) -> str:
    return "sequential" if threads <= 1 else f"{threads} threads"


# -- 3. latency-bound efficiency ------------------------------------------------------------


def efficiency(cfg: Config) -> Section:
    s = Section(
        "latency",
        "3. Latency-bound efficiency: steady-state rows/s as a fraction of concurrency / latency",
        ["latency", "c", "ideal rows/s", "asyncmembers", "raw aiohttp", "asyncmembers whole run",
         "client / server / machine busy", "bottleneck"],
    )
    worst: float | None = None
    ratios: list[float] = []
    with ServerProcess() as srv:
        for lat in cfg.eff_latencies:
            srv.set_faults(latency=lat)
            seconds = max(cfg.eff_seconds, 20 * lat)
            steady = {"skip": 3 * lat + 0.05, "period": lat}
            for c in cfg.eff_concurrencies:
                ideal = c / lat
                runs: dict[str, list[dict[str, Any]]] = {"bulk": [], "raw": []}
                for rep in range(cfg.eff_reps):
                    for kind in (("bulk", "raw") if rep % 2 == 0 else ("raw", "bulk")):
                        r = loopback_run(srv, kind, concurrency=c, seconds=seconds, steady=steady)
                        _check(r, f"{_label(kind)} {lat * 1000:.0f} ms c={c}", s.notes)
                        runs[kind].append(r)

                def eff(kind: str, key: str, runs: dict[str, list[dict[str, Any]]] = runs,
                        ideal: float = ideal) -> float:
                    vals = [r[key] / ideal for r in runs[kind] if r.get(key) is not None]
                    return _median(vals)

                bulk_eff, raw_eff = eff("bulk", "steady_rps"), eff("raw", "steady_rps")
                util = {
                    k: _median([r[k] for r in runs["bulk"]])
                    for k in ("client_util", "server_util", "machine_util")
                }
                hot = _saturation(util)
                if not hot:
                    worst = bulk_eff if worst is None else min(worst, bulk_eff)
                if raw_eff > 0:
                    ratios.append(bulk_eff / raw_eff)
                s.rows.append([
                    f"{lat * 1000:.0f} ms", str(c), f"{ideal:.0f}", _pct(bulk_eff), _pct(raw_eff),
                    _pct(eff("bulk", "rps")),
                    f"{_pct(util['client_util'])} / {_pct(util['server_util'])} / "
                    f"{_pct(util['machine_util'])}",
                    hot or "latency",
                ])
    s.notes.append(
        f"median of {cfg.eff_reps} interleaved run(s) per client and cell, each at least "
        f"{cfg.eff_seconds:g} s and 20 latencies long. Steady state: completions per second in a "
        "window that starts 3 latencies in and spans a whole number of latencies; 'whole run' "
        "also counts the start (bulk_import's one up-front GET of existing members) and the tail"
    )
    s.notes.append(
        f"bottleneck: a process ≥ {100 * _SATURATED:.0f}% busy (CPU s per wall s), or the machine's "
        f"{os.cpu_count()} cores ≥ {100 * _MACHINE_SATURATED:.0f}% busy (anyone's processes; the "
        "machine is shared); 'latency' where neither, which is where the target applies. "
        "Busy figures are asyncmembers' runs"
    )
    if worst is None:
        s.figures.append(Figure("lowest steady-state efficiency where nothing saturates",
                                "n/a (all saturated)", "≥ 90%", None))
    else:
        s.figures.append(Figure("lowest steady-state efficiency where nothing saturates",
                                _pct(worst), "≥ 90%", worst >= 0.90))
    if ratios:
        s.figures.append(Figure("efficiency, asyncmembers / raw aiohttp (median over cells)",
                                f"{_median(ratios):.2f}×"))
    return s


# -- 4. rate-limited server ----------------------------------------------------------------


def rate_limited(cfg: Config) -> Section:
    limit = cfg.rl_limit
    burst = limit  # the server's default bucket: one second's worth
    s = Section(
        "ratelimit",
        f"4. Rate-limited server ({limit:.0f} req/s, 429 + Retry-After), concurrency "
        f"{cfg.rl_concurrency}",
        ["run", "client", "rows created", "wall s", "goodput rows/s", "of admissible",
         "requests (server)", "429 share (server)", "stalls ≥ 0.3 s"],
    )
    per: dict[str, list[tuple[float, float]]] = {"bulk": [], "naive": []}
    with ServerProcess(faults={"rate_limit": limit}) as srv:
        for rep in range(cfg.rl_pairs):
            order = ("bulk", "naive") if rep % 2 == 0 else ("naive", "bulk")
            for kind in order:
                srv.set_faults(rate_limit=limit)  # a new, full bucket
                srv.reset_stats()
                res = loopback_run(srv, kind, concurrency=cfg.rl_concurrency,
                                   seconds=cfg.rl_seconds, warm_rows=0, timeline=True)
                stats = srv.stats()
                _check(res, _label(kind), s.notes)
                requests = stats["requests"]
                n429 = stats["by_status"].get(429, 0)
                share = n429 / requests if requests else 0.0
                admissible = burst + limit * res["wall"]
                frac = res["ok"] / admissible
                per[kind].append((frac, share))
                s.rows.append([
                    str(rep + 1), _label(kind), str(res["ok"]), f"{res['wall']:.1f}",
                    f"{res['ok'] / res['wall']:.0f}", _pct(frac), str(requests), _pct(share),
                    _stall_text(res.get("stalls")),
                ])
    frac = _median([f for f, _ in per["bulk"]])
    share = _median([sh for _, sh in per["bulk"]])
    s.figures.append(Figure("goodput, fraction of the limit (bulk_import)", _pct(frac), "≥ 95%",
                            frac >= 0.95))
    s.figures.append(Figure("share of requests answered 429 (bulk_import)", _pct(share), "≤ 2%",
                            share <= 0.02))
    nf = _median([f for f, _ in per["naive"]])
    ns = _median([sh for _, sh in per["naive"]])
    s.figures.append(Figure("goodput / 429 share, naive client + tenacity",
                            f"{_pct(nf)} / {_pct(ns)}"))
    s.notes.append(
        f"admissible = burst ({burst:.0f}) + {limit:.0f}/s × wall time: the most a client can get "
        "through the server's token bucket in its run; 429 counts are the server's own"
    )
    s.notes.append(
        "stalls: gaps of 0.3 s or more in which no row completed (e.g. every worker paused for "
        "a Retry-After); each second of stall costs up to the limit's worth of rows"
    )
    s.notes.append(
        "the naive client: fixed workers over raw aiohttp, each retrying its own request with "
        "tenacity, waiting out Retry-After (whole seconds) alone"
    )
    return s


def _stall_text(st: dict[str, float] | None) -> str:
    if not st:
        return "-"
    return f"{st['count']:.0f}, {st['seconds']:.1f} s"


# -- 5. memory -------------------------------------------------------------------------------


def memory(cfg: Config) -> Section:
    s = Section(
        "memory",
        "5. Memory: peak RSS of a client process streaming N rows from a generator",
        ["transport", "rows", "peak RSS MB", "before import MB", "growth MB",
         "peak / smallest", "rows/s"],
    )
    worst: float | None = None
    biggest = ""
    tail: tuple[str, float] | None = None
    for transport, sizes in (("instant", cfg.mem_instant), ("loopback", cfg.mem_loopback)):
        if not sizes:
            continue
        srv_cm = ServerProcess() if transport == "loopback" else None
        try:
            srv = srv_cm.__enter__() if srv_cm else None
            first: float | None = None
            prev = 0.0
            for n in sizes:
                params = {
                    "transport": transport,
                    "url": srv.url if srv else "",
                    "instance": srv.new_instance() if srv else "575ec8687ae143cd83dc4a97",
                    "warm_instance": srv.new_instance() if srv else "575ec8687ae143cd83dc4a97",
                    "rows": n,
                    "warm_rows": 500,
                    "concurrency": cfg.mem_concurrency,
                    "tag": _tag(),
                }
                res = run_client("memory", params, timeout=900.0)
                _check(res, f"{transport} {n}", s.notes)
                peak = res["maxrss_mb"]
                first = peak if first is None else first
                ratio = peak / first
                if n == sizes[-1] and len(sizes) > 1 and (worst is None or ratio > worst):
                    worst, biggest = ratio, f"{transport}, {n:,} rows / {sizes[0]:,}"
                    if len(sizes) > 2:
                        tail = (f"peak RSS, {transport}, {n:,} rows / {sizes[-2]:,}", peak / prev)
                prev = peak
                s.rows.append([
                    transport, f"{n:,}", f"{peak:.1f}", f"{res['base_mb']:.1f}",
                    f"{peak - res['base_mb']:.1f}", f"{ratio:.2f}×",
                    f"{res['rows'] / res['wall']:.0f}",
                ])
        finally:
            if srv_cm:
                srv_cm.__exit__(None, None, None)
    if worst is not None:
        s.figures.append(Figure(f"peak RSS, {biggest}",
                                f"{worst:.2f}×", "flat (≤ 1.10×)", worst <= 1.10))
    if tail is not None:
        s.figures.append(Figure(tail[0], f"{tail[1]:.2f}×"))
    s.notes.append(
        "each size runs in a fresh process (ru_maxrss); 'before import' is the peak after imports "
        "and a 500-row warm-up; 'instant' is an in-process transport answering at once "
        "(benchmarks/_instant.py), 'loopback' the embedded server over TCP"
    )
    return s


# -- 6. scheduling overhead ---------------------------------------------------------------------


def scheduling(cfg: Config) -> Section:
    s = Section(
        "scheduling",
        f"6. Scheduling overhead on an instant transport, {cfg.sched_rows:,} rows, "
        f"concurrency {cfg.sched_concurrency}",
        ["variant", "CPU µs/row (median)", "wall µs/row", "minus pool of client.post"],
    )
    out = run_client(
        "scheduling",
        {"rows": cfg.sched_rows, "reps": cfg.sched_reps, "concurrency": cfg.sched_concurrency},
        timeout=900.0,
    )
    runs: dict[str, list[dict[str, Any]]] = out["runs"]

    def us(r: dict[str, Any], key: str = "cpu") -> float:
        return 1e6 * r[key] / r["rows"]

    base = runs["pool_client"]
    names = {
        "pool_raw": "bare pool + queue, raw transport call (no client)",
        "pool_client": "bare pool + queue, client.instance_members.post",
        "gather_client": "asyncio.gather + semaphore, client.instance_members.post",
        "bulk_import": "bulk_import",
    }
    diffs: dict[str, float] = {}
    for v, label in names.items():
        d = _median([us(a) - us(b) for a, b in zip(runs[v], base, strict=True)])
        diffs[v] = d
        s.rows.append([
            label, f"{_median([us(r) for r in runs[v]]):.1f}",
            f"{_median([us(r, 'wall') for r in runs[v]]):.1f}", f"{d:+.1f}",
        ])
        for r in runs[v]:
            if r["failed"]:
                s.notes.append(f"{label}: {r['failed']} rows failed")
                break
    s.figures.append(Figure("importer machinery per row (bulk_import − pool of client.post)",
                            f"{diffs['bulk_import']:+.1f} µs", "≤ 10 µs",
                            diffs["bulk_import"] <= 10.0))
    s.figures.append(Figure("bulk_import − asyncio.gather + semaphore",
                            f"{diffs['bulk_import'] - diffs['gather_client']:+.1f} µs"))
    s.figures.append(Figure("client layers per row (client.post − raw transport call)",
                            f"{-diffs['pool_raw']:+.1f} µs"))
    s.notes.append(
        f"{cfg.sched_reps} interleaved repetitions in one process; differences are medians of "
        "per-repetition differences. Every variant does the same work per row through the same "
        "instant transport (benchmarks/_instant.py); the client.post variants and bulk_import "
        "go through the same resources and session wrapper"
    )
    return s


# -- profiles ----------------------------------------------------------------------------------


def profiles(cfg: Config) -> tuple[Section, list[str]]:
    s = Section(
        "profile",
        "Profiles of the hot path (pyinstrument in the client process): client CPU per row by "
        f"package, loopback, c={cfg.overhead_concurrency}, no latency",
        ["package", "asyncmembers µs/row", "raw aiohttp µs/row", "difference"],
    )
    out_dir = cfg.out_dir or "benchmarks/out"
    prof_dir = os.path.join(out_dir if out_dir != "benchmarks" else "benchmarks/out", "profiles")
    lines: list[str] = []
    c = cfg.overhead_concurrency
    split: dict[str, dict[str, float]] = {}
    with ServerProcess() as srv:
        for kind in ("bulk", "raw"):
            res = loopback_run(srv, kind, concurrency=c, seconds=max(cfg.overhead_seconds, 2.0),
                               profile=os.path.join(prof_dir, f"loopback-{kind}.html"))
            split[kind] = package_us_per_row(res["profile"], res["cpu_us"])
            lines += format_summary(
                f"{_label(kind)} over loopback, c={c}, no latency, {res['rows']} rows, "
                f"{res['cpu_us']:.0f} µs CPU/row while profiled", res["profile"]
            )
            lines.append("")
    packages = sorted(set(split["bulk"]) | set(split["raw"]),
                      key=lambda k: -(split["bulk"].get(k, 0.0) - split["raw"].get(k, 0.0)))
    for pkg in packages:
        b_us, r_us = split["bulk"].get(pkg, 0.0), split["raw"].get(pkg, 0.0)
        s.rows.append([pkg, f"{b_us:.1f}", f"{r_us:.1f}", f"{b_us - r_us:+.1f}"])
    s.rows.append(["total", f"{sum(split['bulk'].values()):.1f}",
                   f"{sum(split['raw'].values()):.1f}",
                   f"{sum(split['bulk'].values()) - sum(split['raw'].values()):+.1f}"])
    res = run_client(
        "profile_instant",
        {"rows": min(cfg.sched_rows, 50_000), "concurrency": cfg.sched_concurrency,
         "profile": os.path.join(prof_dir, "instant-bulk.html")},
        timeout=600.0,
    )
    cpu_us = 1e6 * res["cpu"] / res["rows"]
    lines += format_summary(
        f"bulk_import on the instant transport, {res['rows']} rows, {cpu_us:.1f} µs CPU/row "
        "while profiled", res["profile"]
    )
    s.notes.append(
        "each package's share of the busy samples times the run's measured CPU per row "
        "(profiler overhead included, so compare the columns rather than the absolute values); "
        "'benchmarks' is the harness's own loop and input generator; 'builtins' are C calls "
        "(socket, json, ...) made from any package"
    )
    s.notes.append(f"HTML reports in {prof_dir}/ (not committed)")
    return s, lines


SCENARIOS: dict[str, Callable[[Config], Section]] = {
    "overhead": overhead,
    "official": official,
    "latency": efficiency,
    "ratelimit": rate_limited,
    "memory": memory,
    "scheduling": scheduling,
}
