"""``python -m benchmarks.syscalls``: system calls per row of a cold job, under strace.

CPU spent in the kernel is invisible to instruction counts (``benchmarks.instructions``)
and hides in the noise of timed pairs. This runs the overhead scenario's cold jobs (a
fresh process imports its library and adds ``--rows`` rows against the embedded server
in its own process) under ``strace -f -c`` and prints, per variant, the system calls per
row by name. It found asyncio's per-answer mmap, mremap and munmap (see
``asyncmembers._transport._raise_malloc_mmap_threshold``).

Needs ``strace`` on the PATH. strace slows every system call, so no time is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from ._serverproc import ServerProcess

__all__ = ["count_syscalls"]

#: (client, loop) as in the overhead scenario: the raw gather loop and bulk_import.
VARIANTS = (("raw_gather", "asyncio"), ("bulk", "asyncio"), ("bulk", "cli"))

_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
params = json.loads(sys.argv[1])
if params.pop("without_malloc_adjustment", False):
    import asyncmembers._transport
    asyncmembers._transport._threshold_raised = True  # as if already made: never made
from benchmarks import _clients
_clients.RUNNERS["cold"](params)
"""


def count_syscalls(params: dict[str, object]) -> dict[str, int]:
    """System calls of one cold job (every thread of its process), by name."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "strace.txt")
        child = [sys.executable, "-c", _CHILD.format(root=root), json.dumps(params)]
        done = subprocess.run(
            ["strace", "-f", "-c", "-o", out, *child],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the job under strace failed:\n{done.stderr[-2000:]}")
        with open(out, encoding="utf-8") as f:
            table = f.read()
    counts: dict[str, int] = {}
    for line in table.splitlines():
        # % time, seconds, usecs/call, calls, [errors,] syscall
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.syscalls", description=__doc__)
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--top", type=int, default=8, help="system calls shown per variant")
    ap.add_argument(
        "--without-malloc-adjustment",
        action="store_true",
        help="skip the transport's one-time glibc adjustment (to see what it saves)",
    )
    args = ap.parse_args(argv)
    if shutil.which("strace") is None:
        print("strace is not installed: apt-get install strace", file=sys.stderr)
        return 2
    with ServerProcess() as srv:
        for client, loop in VARIANTS:
            params = {
                "client": client,
                "loop": loop,
                "url": srv.url,
                "instance": srv.new_instance(),
                "rows": args.rows,
                "concurrency": args.concurrency,
                "tag": f"sys{client}{loop}",
                "steady": None,
                "without_malloc_adjustment": args.without_malloc_adjustment,
            }
            counts = count_syscalls(params)
            total = sum(counts.values())
            top = sorted(counts.items(), key=lambda kv: -kv[1])[: args.top]
            shown = ", ".join(f"{name} {n / args.rows:.2f}" for name, n in top)
            print(f"{client} ({loop}): {total / args.rows:.2f} system calls/row; {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
