"""Compile the measured libraries' bytecode before anything is timed.

A cold job imports its library inside the timed region. ``pip install`` compiles a
package's modules to ``__pycache__/*.pyc`` when it installs it, so a user's import only
unmarshals bytecode. A checkout installed with ``pip install -e`` (this repository while
it is being worked on) is never compiled by pip, and with ``PYTHONDONTWRITEBYTECODE`` set
(as on some CI machines) Python does not write the ``.pyc`` files itself either: every
import of an edited module then compiles its source again. That cost (about 30 ms for
asyncmembers, none for aiohttp, which pip compiled) is not what users pay, and it fell
on one side of the comparison only. Compiling every measured library first, as pip does,
puts both sides on the footing of an installed package.
"""

from __future__ import annotations

import compileall
import importlib.util
import os

__all__ = ["compile_measured"]

#: The packages a cold job imports, on either side of a comparison.
MEASURED = (
    "asyncmembers",
    "aiohttp",
    "aiohappyeyeballs",
    "aiosignal",
    "frozenlist",
    "multidict",
    "propcache",
    "yarl",
    "attr",
    "attrs",
    "cattrs",
    "tenacity",
    "ijson",
    "aiolimiter",
    "uvloop",
    "losant_rest",
    "requests",
)


def compile_measured() -> str:
    """Compile (where stale) the bytecode of every measured package; say what was done."""
    compiled = 0
    for name in MEASURED:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            compiled += _stale(folder)
            if not compileall.compile_dir(folder, quiet=2, workers=1):
                raise RuntimeError(f"could not compile the bytecode of {name} in {folder}")
    return (
        "the measured packages' bytecode was compiled before the run, as pip does on "
        f"install ({compiled} modules had none or a stale one)"
    )


def _stale(folder: str) -> int:
    """How many modules under ``folder`` have no bytecode, or bytecode older than the source."""
    count = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if not name.endswith(".py"):
                continue
            source = os.path.join(root, name)
            try:
                cached = os.stat(importlib.util.cache_from_source(source)).st_mtime
            except OSError:
                count += 1
                continue
            if cached < os.stat(source).st_mtime:
                count += 1
    return count
