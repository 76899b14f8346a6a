"""Where a client's time goes: pyinstrument samples summarised per function and package.

``Profiled(path)`` is a context manager that profiles the current thread (all tasks of its
event loop together) when ``path`` is given, saves the HTML report there, and summarises:

- self time per package (asyncmembers, aiohttp, asyncio, tenacity, cattrs, ...);
- asyncmembers' own functions (``file:function``) by self and by inclusive time;
- the top functions overall by self time.

Percentages are of all samples taken in the window.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

__all__ = ["Profiled", "format_summary", "package_us_per_row", "summarise"]

_PACKAGES = (
    "asyncmembers",
    "aiohttp",
    "tenacity",
    "cattrs",
    "attr",
    "yarl",
    "multidict",
    "aiolimiter",
    "asyncio",
    "json",
    "benchmarks",
)


def _short(path: str | None) -> str:
    if not path:
        return "?"
    path = path.replace(os.sep, "/")
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    for pkg in ("asyncmembers/", "benchmarks/"):
        i = path.rfind("/" + pkg)
        if i >= 0:
            return path[i + 1 :]
    return path.rsplit("/", 1)[-1]


def _package(short: str) -> str:
    head = short.split("/", 1)[0].removesuffix(".py")
    if head in _PACKAGES:
        return head
    if short.startswith("<"):
        return "builtins"
    return "other"


class Profiled:
    """Profile the block when ``path`` is set; ``summary()`` is None otherwise."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._profiler: Any = None
        self._summary: dict[str, Any] | None = None

    def __enter__(self) -> Profiled:
        if self._path:
            from pyinstrument import Profiler

            # Wall-clock sampling (pyinstrument's default, lowest overhead). On a busy machine
            # a sample also lands where the process was preempted, often in socket.send
            # (which wakes the server on loopback); the instant-transport profile, with no
            # system calls, is the one that shows asyncmembers' own CPU cleanly.
            self._profiler = Profiler(interval=0.0005, async_mode="disabled")
            self._profiler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._profiler is None:
            return
        session = self._profiler.stop()
        assert self._path is not None
        os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
        with open(self._path, "w", encoding="utf-8") as f:
            f.write(self._profiler.output_html())
        self._summary = summarise(session.root_frame())

    def summary(self) -> dict[str, Any] | None:
        return self._summary


_IDLE = ("epoll.poll", "select.select", "poll.poll", "kqueue.control")


def summarise(root: Any, top: int = 12) -> dict[str, Any]:
    """Seconds per function and package; ``busy_s`` excludes waiting in the selector."""
    if root is None:
        return {"total_s": 0.0, "busy_s": 0.0}
    self_by_fn: Counter[str] = Counter()
    incl_by_fn: Counter[str] = Counter()
    self_by_pkg: Counter[str] = Counter()

    def visit(frame: Any, on_path: frozenset[str]) -> None:
        if frame.is_synthetic:
            return
        short = _short(frame.file_path)
        key = f"{short}:{frame.function}"
        self_time = frame.total_self_time
        self_by_fn[key] += self_time
        self_by_pkg["idle" if frame.function in _IDLE else _package(short)] += self_time
        if key not in on_path:  # count recursion once
            incl_by_fn[key] += frame.time
        path = on_path | {key}
        for child in frame.children:
            visit(child, path)

    visit(root, frozenset())
    idle = self_by_pkg.pop("idle", 0.0)

    def own(key: str) -> bool:
        return key.startswith("asyncmembers/")

    def pick(counter: Counter[str], pred: Any = None) -> list[tuple[str, float]]:
        return [(k, v) for k, v in counter.most_common() if pred is None or pred(k)][:top]

    return {
        "total_s": root.time,
        "busy_s": root.time - idle,
        "by_package": pick(self_by_pkg),
        "own_self": pick(self_by_fn, own),
        "own_inclusive": pick(incl_by_fn, own),
        "top_self": pick(self_by_fn, lambda k: not k.endswith(_IDLE)),
    }


def package_us_per_row(s: dict[str, Any] | None, cpu_us_per_row: float) -> dict[str, float]:
    """The client's measured CPU per row, split by package in proportion to busy samples."""
    if not s or not s.get("busy_s"):
        return {}
    return {k: cpu_us_per_row * v / s["busy_s"] for k, v in s["by_package"]}


def format_summary(title: str, s: dict[str, Any] | None) -> list[str]:
    """Plain-text lines for a summary (for the terminal and RESULTS.md).

    Percentages are of busy samples (not waiting in the selector for I/O).
    """
    if not s or not s.get("busy_s"):
        return [f"{title}: no profile"]
    busy = s["busy_s"]

    def pct(v: float) -> str:
        return f"{100 * v / busy:5.1f}%"

    lines = [f"{title}: {busy:.2f} s busy of {s['total_s']:.2f} s sampled"]
    lines.append(
        "  self time by package: "
        + ", ".join(f"{k} {100 * v / busy:.1f}%" for k, v in s["by_package"])
    )
    lines.append("  asyncmembers functions, inclusive (file:function, % of busy):")
    lines += [f"    {pct(v)}  {k}" for k, v in s["own_inclusive"]]
    lines.append("  asyncmembers functions, self:")
    lines += [f"    {pct(v)}  {k}" for k, v in s["own_self"]]
    lines.append("  top functions overall, self:")
    lines += [f"    {pct(v)}  {k}" for k, v in s["top_self"]]
    return lines
