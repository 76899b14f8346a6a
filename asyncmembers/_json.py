"""JSON in and out: orjson when it is installed, else one prebuilt stdlib encoder.

Both produce the same bytes for what this package sends (compact separators, non-ASCII
kept as UTF-8), so the wire does not depend on which is installed.
``ASYNCMEMBERS_JSON=json`` forces the standard library (used by the tests that compare).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Any

__all__ = ["BACKEND", "dumps", "loads"]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()


def _std_dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _std_loads(data: bytes | str) -> Any:
    if isinstance(data, bytes | bytearray):
        data = data.decode()
    return _DECODER.decode(data)


def _pick() -> tuple[str, Callable[[Any], bytes], Callable[[bytes | str], Any]]:
    if os.environ.get("ASYNCMEMBERS_JSON", "").strip().lower() != "json":
        try:
            orjson = importlib.import_module("orjson")
        except ImportError:
            pass
        else:
            return "orjson", orjson.dumps, orjson.loads
    return "json", _std_dumps, _std_loads


#: ``orjson`` or ``json``: which backend this process uses.
BACKEND: str
#: ``value`` as compact UTF-8 JSON bytes.
dumps: Callable[[Any], bytes]
#: Parse JSON bytes or text; raises ``ValueError`` (``RecursionError`` for absurd nesting).
loads: Callable[[bytes | str], Any]
BACKEND, dumps, loads = _pick()
