"""How busy the machine was with other work while a scenario ran.

``LoadMeter`` reads, at the start and end of a span: ``/proc/loadavg``, the machine's busy
CPU time (``/proc/stat``, every core, anyone's processes) and this process's CPU time plus
that of its finished children (``os.times``: the server and client processes of the
benchmark, joined before the span ends). What the machine was busy with beyond that was
other processes: the noise every figure measured in the span shares.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["Load", "LoadMeter"]


def _loadavg() -> float | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [float(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # idle and iowait are not busy
    return busy / os.sysconf("SC_CLK_TCK")


def _ours_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Load:
    """Other processes' share of the machine during one span."""

    seconds: float
    loadavg_before: float | None
    loadavg_after: float | None
    others_cpu_s: float | None  # CPU seconds used by processes not of this benchmark
    cpus: int

    @property
    def others_share(self) -> float | None:
        """Other processes' CPU as a fraction of all the machine's cores over the span."""
        if self.others_cpu_s is None or self.seconds <= 0:
            return None
        return max(0.0, self.others_cpu_s) / (self.seconds * self.cpus)

    def text(self) -> str:
        def la(x: float | None) -> str:
            return "?" if x is None else f"{x:.2f}"

        share = self.others_share
        others = (
            "unknown (no /proc/stat)"
            if share is None
            else f"{max(0.0, self.others_cpu_s or 0.0):.1f} CPU-s, {100 * share:.0f}% of "
            f"{self.cpus} cores"
        )
        return (
            f"load from other processes: {others} over {self.seconds:.0f} s; "
            f"1-min loadavg {la(self.loadavg_before)} before, {la(self.loadavg_after)} after"
        )


class LoadMeter:
    """Start with ``LoadMeter()``; ``stop()`` returns the :class:`Load` of the span."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._la0 = _loadavg()
        self._busy0 = _machine_busy_s()
        self._ours0 = _ours_s()

    def stop(self) -> Load:
        seconds = time.monotonic() - self._t0
        busy1 = _machine_busy_s()
        others = None
        if busy1 is not None and self._busy0 is not None:
            others = (busy1 - self._busy0) - (_ours_s() - self._ours0)
        return Load(seconds, self._la0, _loadavg(), others, os.cpu_count() or 1)
