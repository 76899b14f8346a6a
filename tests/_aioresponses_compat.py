"""Make aioresponses 0.7.9 work with aiohttp >= 3.14 (test-only shim).

aiohttp 3.14 (a security release) added a required ``stream_writer`` argument to
``ClientResponse.__init__``; aioresponses 0.7.9 does not pass it
(pnuckowski/aioresponses#289, fix proposed in #288, unreleased). aiohttp only reads
``stream_writer.output_size`` there, so a stand-in with ``output_size = 0`` is enough.
The shim does nothing on versions that do not need it; delete it once a fixed
aioresponses is released.
"""

from __future__ import annotations

import inspect
from typing import Any

import aiohttp
import aioresponses.core


class _NoWriter:
    output_size = 0


class CompatClientResponse(aiohttp.ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(method, url, **kwargs)


def install() -> None:
    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    if "stream_writer" in params:
        aioresponses.core.ClientResponse = CompatClientResponse  # type: ignore[misc]
