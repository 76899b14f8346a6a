"""Results: sections of figures, the terminal table, ``RESULTS.md`` and the plot."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SUMMARY_HEADER",
    "Figure",
    "Section",
    "machine_info",
    "plot_throughput",
    "render_markdown",
    "render_section",
    "render_summary",
    "table_lines",
]

SUMMARY_HEADER = ("scenario", "figure", "value", "target", "status")


@dataclass
class Figure:
    """One judged (or informative) number of a scenario."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: not judged (informative, or nothing to judge)

    @property
    def status(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


@dataclass
class Section:
    """A scenario's outcome: a detail table, judged figures, notes and raw data."""

    key: str
    title: str
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    load: str | None = None  # other processes' load during the scenario (_load.Load.text)


def table_lines(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return out


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "-+.×") and cell != "-"


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def summary_rows(sections: list[Section]) -> list[list[str]]:
    rows = []
    for s in sections:
        if s.error:
            rows.append([s.key, "(scenario failed)", "-", "-", "ERROR"])
        for f in s.figures:
            rows.append([s.key, f.name, f.value, f.target or "-", f.status])
    return rows


def render_section(s: Section) -> str:
    out = ["", f"== {s.title}  ({s.seconds:.0f} s)"]
    if s.error:
        out.append(f"   FAILED: {s.error}")
    if s.rows:
        out += ["   " + ln for ln in table_lines(s.header, s.rows)]
    out += [f"   * {n}" for n in s.notes]
    if s.load:
        out.append(f"   * {s.load}")
    return "\n".join(out)


def render_summary(sections: list[Section]) -> str:
    out = ["", "== Summary: asyncmembers benchmarks"]
    out += ["   " + ln for ln in table_lines(SUMMARY_HEADER, summary_rows(sections))]
    return "\n".join(out)


def _git_state() -> str:
    """The commit of the package under test, and whether its files differ from it."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "asyncmembers"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not head:
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" plus uncommitted changes in asyncmembers/" if dirty else "")


def _loops() -> str:
    try:
        import importlib.util

        from asyncmembers import _json, _runtime

        uv = "installed" if importlib.util.find_spec("uvloop") else "not installed"
        return (
            f"uvloop {uv}; the CLI and the embedded server run on {_runtime.loop_name()}, "
            f"asyncmembers' JSON backend is {_json.BACKEND}"
        )
    except Exception as exc:  # the report must not fail over a side detail
        return f"unknown ({type(exc).__name__})"


def machine_info() -> dict[str, str]:
    import aiohttp

    try:
        from importlib.metadata import version

        import losant_rest  # noqa: F401

        losant = version("losant-rest")
    except Exception:
        losant = "not installed"
    return {
        "asyncmembers measured": _git_state(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": str(os.cpu_count()),
        "python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "aiohttp": aiohttp.__version__,
        "losant-rest": losant,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loops": _loops(),
    }


def render_markdown(
    sections: list[Section],
    *,
    command: str,
    mode: str,
    elapsed: float,
    profiles: list[str],
    plot_name: str | None,
    load: str | None = None,
    bytecode: str | None = None,
) -> str:
    info = machine_info()
    if bytecode:
        info["bytecode"] = bytecode
    out = [
        "# asyncmembers benchmark results",
        "",
        "Written by `python -m benchmarks`; every figure is a ratio or fraction against a",
        "baseline measured in the same run: A/B pairs alternating who goes first, the figure",
        "the median of the per-pair ratios, shown with its interquartile range (IQR) and n.",
        "The embedded server and every client under test ran in their own processes on",
        "loopback. Each section ends with the load other processes put on the machine while",
        "it ran: figures measured under load are noisier, not biased to one side (pairs).",
        "",
        f"- command: `{command}` ({mode} mode, {elapsed:.0f} s)",
    ]
    out += [f"- {k}: {v}" for k, v in info.items()]
    if load:
        out.append(f"- whole run: {load}")
    out += ["", "## Summary", ""]
    out += _md_table(SUMMARY_HEADER, summary_rows(sections))
    for s in sections:
        out += ["", f"## {s.title}", ""]
        if s.error:
            out += [f"**Failed:** `{s.error}`", ""]
        if s.rows:
            out += _md_table(s.header, s.rows)
            out.append("")
        out += [f"- {n}" for n in s.notes]
        if s.load:
            out.append(f"- {s.load}")
        if s.key == "official" and plot_name:
            out += ["", f"![rows/s vs concurrency]({plot_name})"]
    if profiles:
        out += ["", "## Profiles", "", "```"]
        out += profiles
        out += ["```"]
    # Kept beside the run and appended to it: the engine's memory, loop and sync figures
    # (their own commands, MEMORY.md) and the before/after of hot-path fixes (HISTORY.md,
    # which spans runs at several commits).
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("MEMORY.md", "HISTORY.md"):
        kept = os.path.join(here, name)
        if os.path.exists(kept):
            with open(kept, encoding="utf-8") as f:
                out += ["", f.read().rstrip()]
    return "\n".join(out) + "\n"


def plot_throughput(curves: dict[str, list[tuple[int, float]]], latency: float, path: str) -> None:
    """rows/s against concurrency (log2), one line per client, plus the ideal c/latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    styles = {
        "asyncmembers": dict(marker="o", color="tab:blue"),
        "raw aiohttp": dict(marker="s", color="tab:green"),
        "losant-rest (threads)": dict(marker="^", color="tab:red"),
    }
    xs_all: list[int] = []
    for name, points in curves.items():
        if not points:
            continue
        points = sorted(points)
        xs = [p[0] for p in points]
        xs_all += xs
        ax.plot(xs, [p[1] for p in points], label=name, **styles.get(name, {}))  # type: ignore[arg-type]
    if xs_all:
        lo, hi = min(xs_all), max(xs_all)
        ideal = [c for c in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if lo <= c <= hi]
        ax.plot(
            ideal,
            [c / latency for c in ideal],
            linestyle=":",
            color="grey",
            label=f"ideal: concurrency / {latency * 1000:.0f} ms",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrency (tasks, or threads for losant-rest)")
    ax.set_ylabel("rows/s (created members)")
    ax.set_title(f"Bulk add of instance members, {latency * 1000:.0f} ms server latency, loopback")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
