"""Test-wide setup: the aioresponses shim, and which event loop(s) async tests run on.

``ASYNCMEMBERS_LOOP`` picks the loop, the same variable the package's own processes read
(``asyncmembers._runtime``), so CLI subprocesses started by a test follow it too:

- unset or ``asyncio``: the standard loop (what a library user gets from ``asyncio.run``);
- ``uvloop``: every async test on uvloop (an error when uvloop is not installed);
- ``both``: every async test twice, once per loop (ids ``[asyncio]`` and ``[uvloop]``).

CI runs the suite on asyncio, then again with ``ASYNCMEMBERS_LOOP=uvloop`` (``.ci/run``):
two passes keep a developer's run as fast as one, where a parametrised fixture would
double every run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests import _aioresponses_compat

_aioresponses_compat.install()

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop_factory() -> LoopFactory:
    try:
        import uvloop
    except ImportError:
        raise pytest.UsageError(
            "ASYNCMEMBERS_LOOP asks for uvloop, which is not installed: pip install -e '.[fast]'"
        ) from None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def _loop_factories() -> dict[str, LoopFactory]:
    wanted = os.environ.get("ASYNCMEMBERS_LOOP", "").strip().lower()
    if wanted in ("", "asyncio", "auto"):
        return {"asyncio": asyncio.new_event_loop}
    if wanted == "uvloop":
        return {"uvloop": _uvloop_factory()}
    if wanted == "both":
        return {"asyncio": asyncio.new_event_loop, "uvloop": _uvloop_factory()}
    raise pytest.UsageError(f"ASYNCMEMBERS_LOOP must be asyncio, uvloop or both, got {wanted!r}")


_FACTORIES = _loop_factories()


def pytest_asyncio_loop_factories(config: pytest.Config, item: Any) -> Mapping[str, LoopFactory]:
    """pytest-asyncio's hook: the loop factories every async test and fixture runs under."""
    return _FACTORIES


def pytest_report_header(config: pytest.Config) -> str:
    return f"asyncmembers test loop(s): {', '.join(_FACTORIES)} (ASYNCMEMBERS_LOOP)"
