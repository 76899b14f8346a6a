"""The benchmark harness runs end to end (tiny sizes); its figures are never asserted."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
def test_benchmarks_smoke_mode_runs_every_scenario_and_prints_the_summary() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "== Summary: asyncmembers benchmarks" in proc.stdout, output[-4000:]
    assert re.search(r"scenario\s+figure\s+value\s+target\s+status", proc.stdout), output[-4000:]
    # Every section says how loaded the machine was, and the paired figures carry their n.
    sections = proc.stdout.count("\n== ") - 1  # minus the summary
    assert proc.stdout.count("load from other processes:") == sections + 1, output[-4000:]
    assert re.search(r"CPU per row, bulk_import .* / raw gather loop .*\(n=1\)", proc.stdout)
    assert "too few pairs for a 95% CI" in proc.stdout, output[-4000:]


@pytest.mark.subprocess
def test_a_cold_jobs_import_region_loads_what_the_job_uses() -> None:
    """The overhead scenario splits a cold job's CPU into import and run: the import
    region must load the library the job runs (asyncmembers loads its public names on
    first use; importing the package alone left its import in the run)."""
    code = (
        "import sys\n"
        "from benchmarks._clients import import_library\n"
        "before = set(sys.modules)\n"
        "import_library(sys.argv[1])\n"
        "print(sorted(m for m in ('aiohttp', 'asyncmembers.client', 'asyncmembers.bulk') "
        "if m in sys.modules and m not in before))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loaded = {}
    for client in ("raw_gather", "bulk"):
        proc = subprocess.run(
            [sys.executable, "-c", code, client],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        loaded[client] = proc.stdout.strip()
    assert loaded["raw_gather"] == "['aiohttp']"
    assert loaded["bulk"] == "['aiohttp', 'asyncmembers.bulk', 'asyncmembers.client']"


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_instruction_counts_per_row_are_positive_and_repeat() -> None:
    """``python -m benchmarks.instructions`` counts (start-up cancelled out), so it
    repeats: the same tiny run twice gives the same per-row count to within 2 %."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.instructions import count
    finally:
        sys.path.remove(str(ROOT))
    first = count("pool_raw", small=100, large=300)
    again = count("pool_raw", small=100, large=300)
    assert first > 10_000  # a POST through a worker pool is tens of thousands
    assert abs(first - again) / first < 0.02, (first, again)


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_cold_instruction_counts_grow_with_the_rows_and_include_the_import() -> None:
    """``python -m benchmarks.instructions --cold``: a whole cold job, import included, so
    it costs far more than its rows alone, and more rows cost more."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks._serverproc import ServerProcess
        from benchmarks.instructions import count_cold
    finally:
        sys.path.remove(str(ROOT))
    with ServerProcess() as srv:
        few = count_cold(srv.url, srv.new_instance(), "bulk", "asyncio", 20)
        more = count_cold(srv.url, srv.new_instance(), "bulk", "asyncio", 220)
    per_row = (more - few) / 200
    assert 10_000 < per_row < 5_000_000, per_row
    assert few > 100 * per_row  # the interpreter's start and the imports


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_an_import_on_asyncio_makes_no_memory_mapping_per_answer() -> None:
    """``python -m benchmarks.syscalls``' count for a cold bulk_import on asyncio: no
    mmap/munmap per answer (the 256 KiB receive buffers come from the heap)."""
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks._serverproc import ServerProcess
        from benchmarks.syscalls import count_syscalls
    finally:
        sys.path.remove(str(ROOT))
    rows = 400
    with ServerProcess() as srv:
        counts = count_syscalls(
            {
                "client": "bulk",
                "loop": "asyncio",
                "url": srv.url,
                "instance": srv.new_instance(),
                "rows": rows,
                "concurrency": 8,
                "tag": "sysmmap",
                "steady": None,
            }
        )
    assert counts.get("sendto", 0) >= rows, counts  # the rows were sent
    # Start-up maps a few hundred regions (libraries, arenas); one per answer would add 400.
    assert counts.get("munmap", 0) < rows // 4, counts
    assert counts.get("mremap", 0) < rows // 4, counts


def test_pacer_simulation_runs_the_real_pacer_in_virtual_time() -> None:
    """benchmarks.pacer_sim: a 200/s bucket admits about 200/s of simulated sending."""
    from benchmarks.pacer_sim import simulate

    server = simulate(200, 200, seconds=20.0)
    ok = server.count(200, 5.0, 20.0)
    assert 0.9 * 200 * 15 <= ok <= 200 * 15 + 200  # the limit, with its bucket at most
    assert server.count(429, 0.0, 20.0) > 0  # it found the limit by running into it
