"""``python -m benchmarks.instructions``: CPU instructions per row, counted, not timed.

Timed figures on a shared two-core machine scatter by ±10 % a pair; a change worth 2 %
cannot be seen in them without hundreds of pairs. This counts instead: each variant
runs on the instant transport (``_instant``: no network, so nothing depends on timing)
under valgrind (``cachegrind``, no cache simulation), once with ``--small`` rows and once
with ``--large`` (one hash seed), and the difference divided by the extra rows is the instructions one
row costs, with start-up and imports cancelled out. Counts repeat to within about 0.1 %.

Variants: ``bulk_import`` (the importer with everything above the transport: validation,
deduplication, the pacer, the session and resources, JSON, answer checks) and
``pool_raw`` (a bare pool of workers doing the same POSTs on the same transport with
stdlib JSON). Instructions are not time (a cache miss costs more than an add), but
between two versions of the same code path they move together; the commit messages of
the per-row optimisations quote these counts.

``--cold`` counts whole cold jobs instead, the overhead scenario's own: a fresh process
imports its library and adds ``--large`` rows against the embedded server (in its own
process, not under valgrind), the import included. Variants: the raw gather loop on
asyncio and on uvloop, and ``bulk_import`` on asyncio and as the CLI runs it; each is
shown against the raw gather loop on asyncio, as the timed figures are. These counts
depend a little on timing (how many answers one wakeup finds), so they repeat to within
a few percent, not exactly; they are a cross-check of the timed ratios, which also pay
for cache misses and the kernel, not a replacement. ``--cold --per-row`` also runs a job
of ``--small`` rows and prints what a row costs beyond it: the request path (aiohttp's
included) without start-up and imports.

Needs ``valgrind`` on the PATH; prints one line per variant and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

__all__ = ["count"]

VARIANTS = ("bulk_import", "pool_raw")

_CHILD = """
import sys
sys.path.insert(0, {root!r})
from benchmarks._clients import _scheduling_once, loop_runner
run = loop_runner({loop!r})
run(_scheduling_once({variant!r}, 200, 32, "warm"))
run(_scheduling_once({variant!r}, {rows}, 32, "measured"))
"""


def _instructions(variant: str, rows: int, loop: str) -> int:
    import benchmarks

    root = benchmarks.__path__[0].rsplit("/", 1)[0]
    return _valgrind(_CHILD.format(root=root, loop=loop, variant=variant, rows=rows))


#: (client, loop) of the overhead scenario's cold jobs; the first is the baseline.
COLD_VARIANTS = (
    ("raw_gather", "asyncio"),
    ("raw_gather", "uvloop"),
    ("bulk", "asyncio"),
    ("bulk", "cli"),
)

_COLD_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks import _clients
result = _clients.RUNNERS["cold"](json.loads(sys.argv[1]))
assert result["ok"] == result["rows"], result
"""


def _valgrind(code: str, *args: str) -> int:
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            code,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def count_cold(url: str, instance: str, client: str, loop: str, rows: int) -> int:
    """Instructions of one whole cold job (interpreter start, import and run)."""
    import benchmarks

    root = benchmarks.__path__[0].rsplit("/", 1)[0]
    params = {
        "client": client,
        "loop": loop,
        "url": url,
        "instance": instance,
        "rows": rows,
        "concurrency": 32,
        "tag": f"ir{client}{loop}{instance[-6:]}",
        "steady": None,
    }
    return _valgrind(_COLD_CHILD.format(root=root), json.dumps(params))


def _cold_main(rows: int, small: int | None = None) -> int:
    from ._bytecode import compile_measured
    from ._serverproc import ServerProcess

    compile_measured()
    counts: dict[tuple[str, str], int] = {}
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    with ServerProcess() as srv:
        for client, loop in COLD_VARIANTS:
            if loop == "uvloop" and not have_uvloop:
                continue
            counts[client, loop] = n = count_cold(srv.url, srv.new_instance(), client, loop, rows)
            base = counts[COLD_VARIANTS[0]]
            per_row = ""
            if small is not None:
                # A second, smaller job: the difference is what the extra rows cost, with
                # start-up and imports cancelled out (it still depends a little on timing).
                m = count_cold(srv.url, srv.new_instance(), client, loop, small)
                per_row = f"; {(n - m) / (rows - small):,.0f} a row beyond {small:,} rows"
            print(
                f"{client:10} ({loop:7}) {n / 1e6:8,.1f} M instructions, {n / rows:8,.0f} a row; "
                f"/ raw gather (asyncio) {n / base:.3f}x{per_row}",
                flush=True,
            )
    if have_uvloop:
        same = counts["bulk", "cli"] / counts["raw_gather", "uvloop"]
        print(f"bulk_import as the CLI runs it (uvloop) / raw gather (uvloop): {same:.3f}x")
    return 0


def count(variant: str, *, small: int, large: int, loop: str = "asyncio") -> float:
    """Instructions one row of ``variant`` costs (start-up and imports cancelled out)."""
    return (_instructions(variant, large, loop) - _instructions(variant, small, loop)) / (
        large - small
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    ap.add_argument("--small", type=int, default=1000, help="rows of the first run")
    ap.add_argument("--large", type=int, default=3000, help="rows of the second run")
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="whole cold jobs of --large rows against the embedded server (import included)",
    )
    ap.add_argument(
        "--per-row",
        action="store_true",
        help="with --cold: also a job of --small rows, and the instructions a row costs "
        "beyond it (the request path without start-up and imports)",
    )
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    if not 0 < args.small < args.large:
        ap.error("--small must be at least 1 and less than --large")
    if args.cold:
        return _cold_main(args.large, args.small if args.per_row else None)
    per_row: dict[str, float] = {}
    for variant in args.variants.split(","):
        per_row[variant] = count(variant, small=args.small, large=args.large, loop=args.loop)
        print(f"{variant:12} {per_row[variant]:9,.0f} instructions/row ({args.loop})", flush=True)
    if "bulk_import" in per_row and "pool_raw" in per_row:
        ratio = per_row["bulk_import"] / per_row["pool_raw"]
        extra = per_row["bulk_import"] - per_row["pool_raw"]
        print(f"bulk_import / pool_raw: {ratio:.2f}x ({extra:+,.0f} instructions/row)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
