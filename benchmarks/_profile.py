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

__all__ = ["Profiled", "format_summary"]

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


def summarise(root: Any, top: int = 12) -> dict[str, Any]:
    if root is None:
        return {"total_s": 0.0}
    total = root.time or 1e-12
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
        self_by_pkg[_package(short)] += self_time
        if key not in on_path:  # count recursion once
            incl_by_fn[key] += frame.time
        path = on_path | {key}
        for child in frame.children:
            visit(child, path)

    visit(root, frozenset())

    def pct(counter: Counter[str], pred: Any = None) -> list[tuple[str, float]]:
        items = [(k, 100.0 * v / total) for k, v in counter.most_common() if pred is None or pred(k)]
        return items[:top]

    def own(key: str) -> bool:
        return key.startswith("asyncmembers/")

    return {
        "total_s": total,
        "by_package": pct(self_by_pkg),
        "own_self": pct(self_by_fn, own),
        "own_inclusive": pct(incl_by_fn, own),
        "top_self": pct(self_by_fn),
    }


def format_summary(title: str, s: dict[str, Any] | None) -> list[str]:
    """Plain-text lines for a summary (for the terminal and RESULTS.md)."""
    if not s or not s.get("by_package"):
        return [f"{title}: no profile"]
    lines = [f"{title} ({s['total_s']:.2f} s sampled)"]
    lines.append("  self time by package: " + ", ".join(f"{k} {v:.1f}%" for k, v in s["by_package"]))
    lines.append("  asyncmembers functions, inclusive time:")
    lines += [f"    {v:5.1f}%  {k}" for k, v in s["own_inclusive"]]
    lines.append("  asyncmembers functions, self time:")
    lines += [f"    {v:5.1f}%  {k}" for k, v in s["own_self"]]
    lines.append("  top functions overall, self time:")
    lines += [f"    {v:5.1f}%  {k}" for k, v in s["top_self"]]
    return lines
