"""Where the package's own processes run: uvloop when it is installed, asyncio otherwise.

The command line, the demo, the embedded server's command and the benchmarks start their
event loop through :func:`run`. Library code never chooses a loop: it runs on whatever
loop the application started (see the README's "Running on uvloop").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOP_ENV", "loop_factory", "loop_name", "run"]

T = TypeVar("T")

#: ``ASYNCMEMBERS_LOOP=asyncio`` forces the standard loop even when uvloop is installed;
#: ``ASYNCMEMBERS_LOOP=uvloop`` requires uvloop (an error when it is missing).
LOOP_ENV = "ASYNCMEMBERS_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for the loop this process should use (``None``: asyncio's default)."""
    wanted = os.environ.get(LOOP_ENV, "").strip().lower()
    if wanted not in ("", "auto", "asyncio", "uvloop"):
        raise RuntimeError(f"{LOOP_ENV} must be asyncio, uvloop or auto, got {wanted!r}")
    if wanted == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            raise RuntimeError(
                f"{LOOP_ENV}=uvloop but uvloop is not installed: pip install 'asyncmembers[fast]'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` would start."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (uvloop when available), like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
