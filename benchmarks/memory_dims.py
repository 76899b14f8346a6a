"""Peak memory and event-loop blocking of the bulk engine, one dimension at a time.

``python -m benchmarks.memory_dims`` (``--quick`` for smaller sizes) prints a table. Each
case runs in a fresh client process (``ru_maxrss`` is a process's peak) against one
embedded server in its own process, so the server's memory is not counted:

- ``created``: 1k valid rows into an empty instance (the baseline the others are held to);
- ``failed``: 1M invalid rows (every one a failure; the result keeps a bounded sample);
- ``instance``: a 1-row import into a 200k-member instance;
- ``instance_rows``: a 1k-row import into the 200k-member instance (the background read of
  the members completes), with the longest single event-loop step;
- ``resume``: a re-run of a finished 200k-row import with its journal;
- ``sync``: a dry-run sync of a 1M-row list of new members (every row a planned add).

The longest loop step is measured by a heartbeat task that sleeps 5 ms at a time and
records how late it wakes: any callback that holds the loop shows up as lateness (counted
only while the process had the CPU, so other processes on a busy machine do not count).
The longest pause of the interpreter's garbage collector is shown beside it: a full
collection holds the loop whatever code allocated (an application can shorten it with
``gc.freeze()`` after its imports).

Internals (used by the tests in ``tests/test_memory_dims.py``): ``python -m
benchmarks.memory_dims serve N`` runs the server with N members in instance BIG and prints
its URL; ``... case NAME N URL DIR`` runs one case and prints a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IID = "575ec8687ae143cd83dc4a97"
BIG = "575ec8687ae143cd83dc4a98"
TOKEN = "memory-bench-token"
ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the server process ---------------------------------------------------------------------


async def _serve(n: int) -> None:
    from asyncmembers.testing import FakeLosantServer

    server = FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID, BIG])
    for i in range(n):
        server.add_member(
            BIG, email=f"member{i}@big.example.com", role="admin" if i % 4 == 0 else "view"
        )
    async with server:
        # Build the server's cached answer to a full list now: the embedded server is one
        # process that answers one request at a time, so a list built on demand would hold
        # up the rows' POSTs behind it (a real server answers them side by side).
        import aiohttp

        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(
                f"{server.url}/instances/{BIG}/members", headers=headers
            ) as resp:
                await resp.read()
        print(server.url, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin


class Server:
    """The server process, with ``n`` members in instance BIG."""

    def __init__(self, n: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory_dims", "serve", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError("the benchmark server did not start")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- one case, in its own process ------------------------------------------------------------


def _rows(tag: str, n: int, *, valid: bool = True) -> Iterator[dict[str, str]]:
    for i in range(n):
        if valid:
            yield {"email": f"{tag}{i}@rows.example.com", "role": "view"}
        else:
            yield {"email": f"{tag}{i}@", "role": "view"}  # invalid: no domain


class Heartbeat:
    """Measures the longest time the event loop was held by anything else."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(self.period)
            late = loop.time() - start - self.period
            # Lateness while this thread ran (CPU time spent) is the loop being held; time
            # the OS gave to other processes on a shared machine is not the engine's.
            self.worst = max(self.worst, min(late, time.thread_time() - cpu))

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        # The interpreter's full collections hold the loop too, whoever allocated: shown
        # apart, so that a long step can be told from the engine's own work.
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.worst_gc = max(self.worst_gc, time.perf_counter() - self._gc_started)

    def __enter__(self) -> Heartbeat:
        self.worst_gc = 0.0
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        gc.callbacks.remove(self._gc)


def write_finished_journal(path: Path, instance_id: str, tag: str, n: int) -> None:
    """A journal as a finished import of ``_rows(tag, n)`` leaves it."""
    with path.open("w", encoding="utf-8") as f:
        f.write(
            json.dumps({"asyncmembers_journal": 2, "instanceId": instance_id, "mode": "import"})
            + "\n"
        )
        for i in range(n):
            f.write(
                json.dumps({"row": i, "key": f"e:{tag}{i}@rows.example.com", "outcome": "created"})
                + "\n"
            )


async def _case(name: str, n: int, url: str, workdir: Path) -> dict[str, Any]:
    import asyncmembers as am

    tag = f"{name}{os.getpid()}-"
    journal = None
    if name == "resume":
        journal = workdir / f"{tag}journal"
        write_finished_journal(journal, IID, tag, n)
    async with am.Client(TOKEN, url=url) as client:
        await client.instance_members.get(
            instanceId=IID, filterField="email", filter="warm@x.example"
        )
        base = rss_mb()
        started = time.perf_counter()
        with Heartbeat() as beat:
            if name == "created":
                result = await am.bulk_import(client, instanceId=IID, members=_rows(tag, n))
            elif name == "failed":
                result = await am.bulk_import(
                    client, instanceId=IID, members=_rows(tag, n, valid=False)
                )
            elif name == "instance":
                result = await am.bulk_import(client, instanceId=BIG, members=_rows(tag, 1))
            elif name == "instance_rows":
                result = await am.bulk_import(client, instanceId=BIG, members=_rows(tag, 1000))
            elif name == "sync":
                result = await am.sync_members(
                    client, instanceId=IID, members=_rows(tag, n), dry_run=True
                )
            elif name == "resume":
                result = await am.bulk_import(
                    client, instanceId=IID, members=_rows(tag, n), journal=journal
                )
            else:
                raise SystemExit(f"unknown case {name}")
        elapsed = time.perf_counter() - started
    return {
        "case": name,
        "n": n,
        "base_mb": base,
        "peak_mb": rss_mb(),
        "elapsed": elapsed,
        "max_step_ms": beat.worst * 1000,
        "max_gc_ms": beat.worst_gc * 1000,
        "result": result.to_dict(),
    }


def run_case(name: str, n: int, url: str, workdir: Path) -> dict[str, Any]:
    """Run one case in a fresh process; return its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory_dims", "case", name, str(n), url, str(workdir)],
        capture_output=True,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"case {name} {n} failed: {done.stderr.decode()[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


# -- the table -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory_dims", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="sizes /10 (a smoke run)")
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["serve"]:
        asyncio.run(_serve(int(rest[1])))
        return 0
    if rest[:1] == ["case"]:
        from asyncmembers._runtime import run

        print(json.dumps(run(_case(rest[1], int(rest[2]), rest[3], Path(rest[4])))))
        return 0
    scale = 10 if args.quick else 1
    big = 200_000 // scale
    import tempfile

    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp, Server(big) as server:
        work = Path(tmp)
        plan = [
            ("1k rows created (baseline)", "created", 1000),
            (f"{1_000_000 // scale:,} invalid rows", "failed", 1_000_000 // scale),
            (f"1-row import, {big:,}-member instance", "instance", 1),
            (f"1k-row import, {big:,}-member instance", "instance_rows", 1000),
            (f"resume of a finished {big:,}-row journal", "resume", big),
            (f"dry-run sync of {1_000_000 // scale:,} new members", "sync", 1_000_000 // scale),
        ]
        for label, name, n in plan:
            rows.append((label, run_case(name, n, server.url, work)))
    base_peak = rows[0][1]["peak_mb"]
    print(
        f"{'case':45} {'peak RSS':>9} {'vs 1k':>8} {'time':>8} {'longest loop step':>18} {'longest GC':>10}  result"
    )
    for label, fig in rows:
        r = fig["result"]
        kinds = ("created", "added", "skipped", "failed")
        counts = ", ".join(f"{k} {r[k]:,}" for k in kinds if r.get(k))
        print(
            f"{label:45} {fig['peak_mb']:7.1f}MB {fig['peak_mb'] - base_peak:+7.1f} "
            f"{fig['elapsed']:7.2f}s {fig['max_step_ms']:15.1f} ms {fig['max_gc_ms']:7.1f} ms  {counts}"
        )
    print(f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus; each case in a fresh process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
