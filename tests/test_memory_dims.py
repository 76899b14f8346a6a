"""The engine's memory does not grow with failed rows, journal size or instance size.

Each figure is a fresh client process's peak RSS (``ru_maxrss``), at two sizes ten times
apart, against the embedded server in a process of its own (so its memory is not
counted); see ``benchmarks/memory_dims.py``, which also prints the full-size table. The
bounds are far below what each dimension cost before it was made flat (4 KB per failed
row, about 100 bytes per journal key, the whole member list per import), so the tests
fail if one grows with N again, and far above the noise of ``ru_maxrss``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.memory_dims import Server, run_case

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def small_server() -> Iterator[Server]:
    with Server(2_000) as server:
        yield server


def growth(
    name: str, sizes: tuple[int, int], url: str, tmp: Path
) -> tuple[float, dict[str, object]]:
    small = run_case(name, sizes[0], url, tmp)
    large = run_case(name, sizes[1], url, tmp)
    return large["peak_mb"] - small["peak_mb"], large


def test_failed_rows_do_not_grow_memory(small_server: Server, tmp_path: Path) -> None:
    grew, large = growth("failed", (10_000, 100_000), small_server.url, tmp_path)
    result = large["result"]
    assert isinstance(result, dict)
    assert result["failed"] == 100_000 and result["failures_omitted"] == 99_000
    assert result["failures_by_type"] == {"ValidationError": 100_000}
    # Before: every failure kept (about 4 KB each): +360 MB here.
    assert grew < 8, f"peak RSS grew {grew:.1f} MB from 10k to 100k failed rows"


def test_resuming_a_large_journal_does_not_grow_memory(
    small_server: Server, tmp_path: Path
) -> None:
    grew, large = growth("resume", (20_000, 200_000), small_server.url, tmp_path)
    result = large["result"]
    assert isinstance(result, dict)
    assert result["skipped_by_reason"] == {"done in an earlier run": 200_000}
    assert result["created"] == 0
    # Before: a set of key strings (about 100 bytes a key): +20 MB here.
    assert grew < 8, f"peak RSS grew {grew:.1f} MB from a 20k- to a 200k-row journal"


def test_a_small_import_into_a_large_instance_does_not_load_it(
    small_server: Server, tmp_path: Path
) -> None:
    small = run_case("instance", 1, small_server.url, tmp_path)
    with Server(100_000) as big:
        large = run_case("instance", 1, big.url, tmp_path)
    assert large["result"]["created"] == 1  # type: ignore[index]
    grew = large["peak_mb"] - small["peak_mb"]  # type: ignore[operator]
    # Before: the whole member list was fetched and held before the first POST: +150 MB.
    assert grew < 10, f"peak RSS grew {grew:.1f} MB from a 2k- to a 100k-member instance"


def test_a_long_sync_list_does_not_grow_memory(small_server: Server, tmp_path: Path) -> None:
    grew, large = growth("sync", (20_000, 300_000), small_server.url, tmp_path)
    result = large["result"]
    assert isinstance(result, dict)
    assert result["added"] == 300_000 and result["dry_run"] is True
    # Before: every planned add kept in the member table (~50 bytes a row): +14 MB here.
    assert grew < 6, f"peak RSS grew {grew:.1f} MB from a 20k- to a 300k-row sync list"
