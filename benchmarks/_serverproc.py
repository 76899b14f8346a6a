"""The embedded server in its own process, steered from the parent over a pipe.

The child samples its own CPU time and request counters every 50 ms, so the parent can
ask what the server did during a client's measured window (``time.monotonic`` is one
clock for every process on the machine).
"""

from __future__ import annotations

import asyncio
import bisect
import secrets
import time
from collections import deque
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from ._procs import BenchError, child_setup, pipe, start_child, stop

__all__ = ["TOKEN", "ServerProcess", "new_instance_id"]

TOKEN = "bench-token"
_SAMPLE_EVERY = 0.05


def new_instance_id() -> str:
    """A fresh random ObjectId (24 hex digits)."""
    return secrets.token_hex(12)


def _stats_dict(stats: Any) -> dict[str, Any]:
    return {
        "requests": stats.requests,
        "by_status": {int(k): v for k, v in stats.by_status.items()},
        "posts_applied": stats.posts_applied,
        "faults": {str(k): v for k, v in stats.faults.items()},
    }


def _machine_jiffies() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, all cores, from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [float(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    total = sum(fields)
    return total - fields[3] - fields[4], total  # idle and iowait are not busy


def _interpolate(samples: list[tuple[float, ...]], t: float) -> tuple[float, ...]:
    times = [s[0] for s in samples]
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return samples[0]
    if i >= len(samples):
        return samples[-1]
    a, b = samples[i - 1], samples[i]
    span = b[0] - a[0]
    f = 0.0 if span <= 0 else (t - a[0]) / span
    return tuple(x + (y - x) * f for x, y in zip(a, b, strict=True))


async def _serve(conn: Connection, faults: dict[str, Any], seed: int) -> None:
    from asyncmembers.testing import FakeLosantServer, Faults

    server = FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]},
        instances=[new_instance_id()],
        faults=Faults(**faults),
        seed=seed,
    )
    samples: deque[tuple[float, ...]] = deque(maxlen=200_000)

    def sample() -> None:
        stats = server.stats
        busy, total = _machine_jiffies()
        samples.append(
            (
                time.monotonic(),
                time.process_time(),
                stats.requests,
                stats.by_status.get(429, 0),
                busy,
                total,
            )
        )

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(_SAMPLE_EVERY)

    def window(t0: float, t1: float) -> dict[str, float]:
        sample()
        rows = list(samples)
        a, b = _interpolate(rows, t0), _interpolate(rows, t1)
        return {
            "cpu": b[1] - a[1],
            "requests": b[2] - a[2],
            "n429": b[3] - a[3],
            # fraction of all the machine's cores busy (anyone's processes, ours included)
            "machine": (b[4] - a[4]) / (b[5] - a[5]) if b[5] > a[5] else float("nan"),
            "covered": rows[0][0] <= t0 and t1 <= rows[-1][0],
        }

    def handle(cmd: str, args: tuple[Any, ...]) -> Any:
        if cmd == "add_instance":
            server.add_instance(args[0])
            return None
        if cmd == "faults":
            server.faults = Faults(**args[0])  # also restarts the rate-limit bucket, full
            return None
        if cmd == "stats":
            return _stats_dict(server.stats)
        if cmd == "reset_stats":
            return _stats_dict(server.reset_stats())
        if cmd == "window":
            return window(*args)
        if cmd == "members_count":
            return len(server.members(args[0]))
        raise ValueError(f"unknown command {cmd!r}")

    loop = asyncio.get_running_loop()
    async with server:
        task = asyncio.create_task(sampler())
        conn.send(("ready", server.url))
        try:
            while True:
                try:
                    cmd, args = await loop.run_in_executor(None, conn.recv)
                except (EOFError, OSError):
                    break  # the parent went away
                if cmd == "stop":
                    conn.send(("ok", None))
                    break
                try:
                    conn.send(("ok", handle(cmd, args)))
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            task.cancel()


def _server_entry(conn: Connection, faults: dict[str, Any], seed: int, hard_timeout: float) -> None:
    child_setup(hard_timeout)
    try:
        # The loop `asyncmembers fake-server` runs on (uvloop when installed).
        from asyncmembers._runtime import run

        run(_serve(conn, faults, seed))
    finally:
        conn.close()


class ServerProcess:
    """A FakeLosantServer with ``faults`` (keyword arguments of ``Faults``) in a child."""

    def __init__(
        self, *, faults: dict[str, Any] | None = None, seed: int = 0, hard_timeout: float = 1800.0
    ) -> None:
        self._faults = dict(faults or {})
        self._seed = seed
        self._hard_timeout = hard_timeout
        self._conn: Connection | None = None
        self._proc: Any = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        ours, theirs = pipe()
        self._conn = ours
        self._proc = start_child(
            _server_entry, (theirs, self._faults, self._seed, self._hard_timeout), "bench-server"
        )
        theirs.close()
        try:
            if not ours.poll(30.0):
                raise BenchError("the server process did not start within 30 s")
            _status, url = ours.recv()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.url = url
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(("stop", ()))
                if conn.poll(5.0):
                    conn.recv()
            except (OSError, EOFError):
                pass
            conn.close()
        if self._proc is not None:
            stop(self._proc, grace=5.0)
            self._proc = None

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def call(self, cmd: str, *args: Any, timeout: float = 30.0) -> Any:
        if self._conn is None:
            raise BenchError("the server process is not running")
        self._conn.send((cmd, args))
        if not self._conn.poll(timeout):
            raise BenchError(f"the server did not answer {cmd!r} within {timeout:.0f} s")
        status, payload = self._conn.recv()
        if status != "ok":
            raise BenchError(f"server command {cmd!r} failed: {payload}")
        return payload

    def new_instance(self) -> str:
        instance_id = new_instance_id()
        self.call("add_instance", instance_id)
        return instance_id

    def set_faults(self, **faults: Any) -> None:
        self.call("faults", faults)

    def stats(self) -> dict[str, Any]:
        return dict(self.call("stats"))

    def reset_stats(self) -> dict[str, Any]:
        return dict(self.call("reset_stats"))

    def window(self, t0: float, t1: float) -> dict[str, float]:
        """What the server did between two ``time.monotonic()`` instants."""
        return dict(self.call("window", t0, t1))
