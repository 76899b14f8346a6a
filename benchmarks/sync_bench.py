"""``python -m benchmarks.sync_bench``: a desired-state sync of a large instance.

A 100k-member instance (``--members N``) and a desired list that differs from it in 1 %
adds, 1 % role changes and 1 % removals (``prune=True``). The embedded server runs in its
own process; the sync in a fresh one, so ``ru_maxrss`` is the sync's own peak. Prints the
wall time, the requests sent (which must equal the changes plus the one read of the
members), the peak RSS and the longest event-loop step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.memory_dims import BIG, ROOT, TOKEN, Heartbeat, Server, rss_mb


def desired_rows(n: int) -> Iterator[dict[str, str]]:
    """The server's BIG instance (see memory_dims) with 1 % gone, 1 % changed, 1 % new."""
    for i in range(n):
        if i % 100 == 0:
            continue  # a leaver: removed
        role = "admin" if i % 4 == 0 else "view"
        if i % 100 == 1:
            role = "view" if role == "admin" else "admin"  # a role change
        yield {"email": f"member{i}@big.example.com", "role": role}
    for i in range(n // 100):
        yield {"email": f"joiner{i}@big.example.com", "role": "view"}


async def _run(n: int, url: str, concurrency: int) -> dict[str, Any]:
    import asyncmembers as am

    async with am.Client(TOKEN, url=url) as client:
        await client.instance_members.get(
            instanceId=BIG, filterField="email", filter="warm@x.example"
        )
        base = rss_mb()
        started = time.perf_counter()
        with Heartbeat() as beat:
            result = await am.sync_members(
                client,
                instanceId=BIG,
                members=desired_rows(n),
                prune=True,
                max_removals=n,
                concurrency=concurrency,
            )
        elapsed = time.perf_counter() - started
    return {
        "n": n,
        "elapsed": elapsed,
        "base_mb": base,
        "peak_mb": rss_mb(),
        "max_step_ms": beat.worst * 1000,
        "max_gc_ms": beat.worst_gc * 1000,
        "result": result.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sync_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--members", type=int, default=100_000, help="members in the instance (100000)"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["run"]:
        from asyncmembers._runtime import run

        print(json.dumps(run(_run(int(rest[1]), rest[2], args.concurrency))))
        return 0
    n = args.members
    with Server(n) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.sync_bench",
                "--concurrency",
                str(args.concurrency),
                "run",
                str(n),
                server.url,
            ],
            capture_output=True,
            cwd=ROOT,
            timeout=1800,
            check=False,
        )
    if done.returncode != 0:
        print(done.stderr.decode()[-3000:], file=sys.stderr)
        return 1
    fig = json.loads(done.stdout.decode().strip().splitlines()[-1])
    r = fig["result"]
    changes = r["added"] + r["updated"] + r["removed"]
    expected = changes + 1
    print(f"sync of a {n:,}-member instance: 1 % adds, 1 % role changes, 1 % removals (prune)")
    print(
        f"  added {r['added']:,}, updated {r['updated']:,}, removed {r['removed']:,}, unchanged {r['unchanged']:,}, failed {r['failed']:,}"
    )
    print(f"  wall time          {fig['elapsed']:8.2f} s")
    print(
        f"  requests sent      {r['requests']:8,}   (changes + 1 read = {expected:,}; retries {r['retries']})"
    )
    print(
        f"  peak RSS           {fig['peak_mb']:8.1f} MB (before the sync: {fig['base_mb']:.1f} MB)"
    )
    print(
        f"  longest loop step  {fig['max_step_ms']:8.1f} ms (longest garbage collection {fig['max_gc_ms']:.1f} ms)"
    )
    ok = r["requests"] == expected and r["failed"] == 0
    print("  requests == changes + reads:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
