"""The command line: pick a mode, run the scenarios, print and write the results."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback

from ._bytecode import compile_measured
from ._load import LoadMeter
from ._procs import stop_all
from ._report import (
    Section,
    machine_info,
    plot_throughput,
    render_markdown,
    render_section,
    render_summary,
)
from ._scenarios import CONFIGS, SCENARIOS, profiles

__all__ = ["main"]

_DESCRIPTION = """\
Benchmarks of asyncmembers against baselines measured in the same run: raw aiohttp,
the official losant-rest client, a naive retrying client, bare asyncio loops. The embedded
server and every client under test run in their own processes, on loopback only.

Modes: full (default, about twelve minutes on a quiet machine; writes benchmarks/RESULTS.md
and benchmarks/throughput.png), --quick (a few minutes; writes into benchmarks/out/; the
client-overhead pairs continue until they resolve a 10% difference, within a budget, and
say whether they did), --smoke (tiny sizes; writes nothing: it only checks that
everything runs).
"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}",
    )
    ap.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile the hot path with pyinstrument (default: on in full mode only)",
    )
    ap.add_argument(
        "--out",
        metavar="DIR",
        help="where to write RESULTS.md and throughput.png "
        "(default: benchmarks/ in full mode, benchmarks/out/ with --quick, nowhere with --smoke)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = CONFIGS[mode]
    if args.profile is not None:
        cfg = dataclasses.replace(cfg, profile=args.profile)
    if args.out is not None:
        cfg = dataclasses.replace(cfg, out_dir=args.out)
    names = list(SCENARIOS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            print(
                f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}",
                file=sys.stderr,
            )
            return 2
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    info = machine_info()
    print(
        f"asyncmembers benchmarks: {mode} mode; {info['platform']}, {info['cpus']} CPUs, "
        f"Python {info['python']}, aiohttp {info['aiohttp']}",
        flush=True,
    )

    bytecode = compile_measured()
    print(f"   {bytecode}", flush=True)
    started = time.monotonic()
    whole = LoadMeter()
    sections: list[Section] = []
    prof_lines: list[str] = []
    try:
        for name in names:
            t0 = time.monotonic()
            print(f"-- {name} ...", flush=True)
            meter = LoadMeter()
            try:
                section = SCENARIOS[name](cfg)
            except Exception as exc:
                traceback.print_exc()
                section = Section(name, name, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            section.seconds = time.monotonic() - t0
            section.load = meter.stop().text()
            sections.append(section)
            print(render_section(section), flush=True)
        if cfg.profile:
            print("-- profiles ...", flush=True)
            t0 = time.monotonic()
            try:
                psec, prof_lines = profiles(cfg)
            except Exception as exc:
                traceback.print_exc()
                psec = Section("profile", "profiles", error=f"{type(exc).__name__}: {exc}")
            psec.seconds = time.monotonic() - t0
            print(render_section(psec))
            print("\n".join("   " + ln for ln in prof_lines), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the benchmark's child processes", file=sys.stderr)
        stop_all()
        return 130
    finally:
        stop_all()

    elapsed = time.monotonic() - started
    whole_load = whole.stop().text()
    print(render_summary(sections))
    print(f"\nwhole run: {whole_load}")
    print(f"\n{mode} run took {elapsed:.0f} s", flush=True)

    if cfg.out_dir:
        os.makedirs(cfg.out_dir, exist_ok=True)
        plot_name = None
        official = next((s for s in sections if s.key == "official" and s.data), None)
        if official is not None:
            plot_name = "throughput.png"
            plot_throughput(
                official.data["curves"],
                official.data["latency"],
                os.path.join(cfg.out_dir, plot_name),
            )
        results = os.path.join(cfg.out_dir, "RESULTS.md")
        with open(results, "w", encoding="utf-8") as f:
            f.write(
                render_markdown(
                    sections,
                    command=command,
                    mode=mode,
                    elapsed=elapsed,
                    profiles=prof_lines,
                    plot_name=plot_name,
                    load=whole_load,
                    bytecode=bytecode,
                )
            )
        print(
            f"wrote {results}"
            + (f" and {os.path.join(cfg.out_dir, plot_name)}" if plot_name else "")
        )
    return 1 if any(s.error for s in sections) else 0
