"""Throughput of the embedded Losant server, against a bare aiohttp server as baseline.

Each server runs in its own process; this process drives it over loopback with a raw
aiohttp client, ``--concurrency`` requests in flight, for ``--duration`` seconds per
phase: GET (list an instance of 20 members) and POST (add a new member each time).

The baseline is an aiohttp.web app answering the same routes with a constant body, so
the ratio shows what the fake's own work costs. The absolute numbers are bound by the
client as much as by the server: both share the machine's cores.

    python benchmarks/server_throughput.py [--duration 3] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import os
import signal
import sys
from typing import Any

import aiohttp
from aiohttp import web

# Servers and the load generator run on the loop the package's own commands use
# (uvloop when installed; ASYNCMEMBERS_LOOP=asyncio for the standard loop).
from asyncmembers._runtime import loop_name, run

INSTANCE = "575ec8687ae143cd83dc4a97"
TOKEN = "bench-token"
PATH = f"/instances/{INSTANCE}/members"
SEEDED_MEMBERS = 20


# -- servers (run in child processes) --------------------------------------------------------


def _run_fake(ready: Any) -> None:
    from asyncmembers.testing import FakeLosantServer, serve_forever

    server = FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[INSTANCE])
    for i in range(SEEDED_MEMBERS):
        server.add_member(INSTANCE, email=f"seed{i}@example.com", role="view" if i % 3 else "admin")
    run(serve_forever(server, on_ready=ready.put))


def _run_bare(ready: Any) -> None:
    body = (
        b'{"instanceId":"%s","userId":"575ef90f7ae143cd83dc4aad","role":"view"}' % INSTANCE.encode()
    )

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get(PATH, get)
        app.router.add_post(PATH, post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ready.put(f"http://127.0.0.1:{runner.addresses[0][1]}")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        run(main())


class ServerProcess:
    def __init__(self, target: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready = ctx.Queue()
        self._proc = ctx.Process(target=target, args=(self._ready,), daemon=True)

    def __enter__(self) -> str:
        self._proc.start()
        url: str = self._ready.get(timeout=30)
        return url

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()  # SIGTERM: serve_forever closes the server cleanly
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


# -- the load generator ---------------------------------------------------------------------


async def drive(url: str, method: str, concurrency: int, duration: float) -> tuple[int, int, float]:
    """Run ``concurrency`` workers for ``duration`` s; return (ok, failed, elapsed)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    counter = itertools.count()
    ok = failed = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:
        loop = asyncio.get_running_loop()
        # Warm the connections up before timing.
        async with http.get(PATH) as resp:
            await resp.read()
        start = loop.time()
        deadline = start + duration

        async def worker() -> None:
            nonlocal ok, failed
            while loop.time() < deadline:
                if method == "GET":
                    ctx = http.get(PATH)
                else:
                    ctx = http.post(
                        PATH, json={"email": f"b{next(counter)}@example.com", "role": "view"}
                    )
                async with ctx as resp:
                    await resp.read()
                    if resp.status == 200:
                        ok += 1
                    else:
                        failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok, failed, loop.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare aiohttp server")
    args = parser.parse_args()

    targets = [("fake", _run_fake)] + ([] if args.no_baseline else [("bare aiohttp", _run_bare)])
    rates: dict[tuple[str, str], float] = {}
    print(f"{'server':<14}{'phase':<6}{'ok':>9}{'failed':>8}{'seconds':>9}{'req/s':>10}")
    for name, target in targets:
        with ServerProcess(target) as url:
            for method in ("GET", "POST"):
                ok, failed, elapsed = run(drive(url, method, args.concurrency, args.duration))
                rates[name, method] = rate = ok / elapsed
                print(
                    f"{name:<14}{method:<6}{ok:>9}{failed:>8}{elapsed:>9.2f}{rate:>10.0f}",
                    flush=True,
                )
    if not args.no_baseline:
        print()
        for method in ("GET", "POST"):
            ratio = rates["fake", method] / rates["bare aiohttp", method]
            print(f"fake / bare aiohttp, {method}: {ratio:.2f}")
    print(
        f"\nconcurrency {args.concurrency}, {os.cpu_count()} CPUs, {loop_name()} loop, "
        f"Python {sys.version.split()[0]}, "
        f"aiohttp {aiohttp.__version__}. Client and server share the CPUs: these figures are "
        "client+server bound, not a ceiling of the server alone."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
