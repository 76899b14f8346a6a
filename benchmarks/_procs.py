"""Child processes for the benchmarks: the server and each client run in their own.

Every child is started with ``spawn`` (so its memory and CPU are its own, not pages
inherited from this process), ignores SIGINT (the parent decides when it stops), and
carries a watchdog thread that ends it when its parent goes away or a hard time limit
passes. The parent keeps a registry of live children and stops them all on every exit
path, Ctrl-C included (:func:`stop_all`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

__all__ = ["BenchError", "child_setup", "run_client", "start_child", "stop", "stop_all"]

_CTX = mp.get_context("spawn")
_LIVE: set[BaseProcess] = set()


class BenchError(RuntimeError):
    """A benchmark child failed, died or did not answer in time."""


def child_setup(hard_timeout: float) -> None:
    """Call first in every child: ignore Ctrl-C, and exit when orphaned or overdue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    end = time.monotonic() + hard_timeout

    def watch() -> None:
        while time.monotonic() < end:
            if os.getppid() != parent:
                os._exit(70)
            time.sleep(0.25)
        os._exit(71)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


def start_child(target: Any, args: tuple[Any, ...], name: str) -> BaseProcess:
    """Start a registered, daemonic, spawned child running ``target(*args)``."""
    proc = _CTX.Process(target=target, args=args, name=name, daemon=True)
    proc.start()
    _LIVE.add(proc)
    return proc


def stop(proc: BaseProcess, grace: float = 5.0) -> None:
    """Wait up to ``grace`` seconds for ``proc`` to end, then terminate, then kill it."""
    proc.join(grace)
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    if proc.is_alive():
        proc.kill()
        proc.join(2.0)
    _LIVE.discard(proc)


def stop_all() -> None:
    """Stop every child this process started and that is still registered."""
    for proc in list(_LIVE):
        stop(proc, grace=0.0)


def pipe() -> tuple[Connection, Connection]:
    return _CTX.Pipe()


def _client_entry(conn: Connection, kind: str, params: dict[str, Any], hard_timeout: float) -> None:
    child_setup(hard_timeout)
    try:
        import resource

        from . import _clients

        result = _clients.RUNNERS[kind](params)
        result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        reply = ("ok", result)
    except BaseException:
        reply = ("error", traceback.format_exc())
    try:
        conn.send(reply)
    except OSError:
        pass  # the parent stopped listening (interrupted): nobody to tell
    finally:
        conn.close()


def run_client(kind: str, params: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Run client ``kind`` with ``params`` in a fresh process; return its result dict."""
    ours, theirs = _CTX.Pipe(duplex=False)
    proc = start_child(_client_entry, (theirs, kind, params, timeout + 15.0), f"bench-{kind}")
    theirs.close()
    answered = False
    try:
        if not ours.poll(timeout):
            raise BenchError(f"client {kind!r} gave no result within {timeout:.0f} s")
        try:
            status, payload = ours.recv()
        except EOFError:
            proc.join(2.0)
            raise BenchError(f"client {kind!r} died (exit code {proc.exitcode})") from None
        answered = True
    finally:
        ours.close()
        stop(proc, grace=5.0 if answered else 0.0)
    if status != "ok":
        raise BenchError(f"client {kind!r} failed:\n{payload}")
    return dict(payload)
