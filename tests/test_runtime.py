"""The fast extras change nothing a user can see: the loop runner and the JSON codec.

- Async tests run on the loop ``ASYNCMEMBERS_LOOP`` asks for (``tests/conftest.py``), so a
  CI pass with ``ASYNCMEMBERS_LOOP=uvloop`` really exercises uvloop.
- ``asyncmembers._runtime.run`` starts uvloop when installed, asyncio when told to.
- ``asyncmembers._json``: orjson and the stdlib fallback put the same bytes on the wire for
  every member the fuzz corpus can build (non-ASCII, escapes, control characters), refuse
  the same values, and parse to the same objects; ``ASYNCMEMBERS_JSON=json`` in a fresh
  process selects the fallback and produces those bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncmembers import _json, _runtime
from tests._shared import HOSTILE_VALUES

ROOT = Path(__file__).resolve().parents[1]
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
HAVE_ORJSON = importlib.util.find_spec("orjson") is not None


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def test_async_tests_run_on_the_loop_asyncmembers_loop_asks_for() -> None:
    wanted = os.environ.get("ASYNCMEMBERS_LOOP", "").strip().lower() or "asyncio"
    kind = _loop_kind(asyncio.get_running_loop())
    if wanted == "both":
        assert kind in ("asyncio", "uvloop")
    else:
        assert kind == ("asyncio" if wanted == "auto" else wanted)


@pytest.mark.parametrize("wanted", ["asyncio", "uvloop", "auto", ""])
def test_runtime_run_starts_the_loop_asked_for(
    monkeypatch: pytest.MonkeyPatch, wanted: str
) -> None:
    if wanted == "uvloop" and not HAVE_UVLOOP:
        pytest.skip("uvloop is not installed")
    monkeypatch.setenv(_runtime.LOOP_ENV, wanted)

    async def which() -> str:
        await asyncio.sleep(0)
        return _loop_kind(asyncio.get_running_loop())

    expected = "asyncio" if wanted == "asyncio" or not HAVE_UVLOOP else "uvloop"
    assert _runtime.run(which()) == expected == _runtime.loop_name()


def test_runtime_refuses_an_unknown_loop_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_runtime.LOOP_ENV, "trio")
    with pytest.raises(RuntimeError, match="ASYNCMEMBERS_LOOP must be asyncio, uvloop or auto"):
        _runtime.loop_factory()


# -- JSON: the same bytes either way -----------------------------------------------------------

needs_orjson = pytest.mark.skipif(not HAVE_ORJSON, reason="orjson is not installed")

TEXT = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.text(),
    st.text(alphabet=st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029\ufeff é用😀')),
)
MEMBER = st.fixed_dictionaries(
    {}, optional={"email": TEXT, "userId": TEXT, "role": TEXT}
) | st.dictionaries(TEXT, TEXT, max_size=4)


def _std_refuses(value: Any) -> bool:
    try:
        _json._std_dumps(value)
    except (TypeError, ValueError):
        return True
    return False


@needs_orjson
@settings(max_examples=500, deadline=None)
@example(member={"email": "jürgen@bücher.de", "role": "view"})
@example(member={"email": 'a"\\\n\t\x00\x1f\x7f\u2028@example.com', "role": "admin"})
@example(member={"email": "\ud800@example.com", "role": "view"})
@given(member=MEMBER)
def test_orjson_and_the_stdlib_fallback_put_the_same_bytes_on_the_wire(
    member: dict[str, str],
) -> None:
    import orjson

    if _std_refuses(member):
        # Not UTF-8 encodable (a lone surrogate): both must refuse, neither may send it.
        with pytest.raises(TypeError):
            orjson.dumps(member)
        return
    wire = _json._std_dumps(member)
    assert orjson.dumps(member) == wire
    # And what goes out comes back the same through either parser.
    assert orjson.loads(wire) == _json._std_loads(wire) == member


@needs_orjson
@settings(max_examples=200, deadline=None)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=10,
    )
)
def test_both_parsers_read_a_server_answer_the_same(body: Any) -> None:
    import orjson

    if _std_refuses(body):
        return
    raw = _json._std_dumps(body)
    assert orjson.loads(raw) == _json._std_loads(raw) == json.loads(raw)


_CORPUS = [
    {"email": v, "role": r}
    for v in HOSTILE_VALUES
    for r in ("view", " Admin ")
    if not _std_refuses({"email": v})
] + [{"userId": "675ed18f7ae143cd83dc4bb7", "role": "view"}, {"email": "用户@例子.广告"}]


def _digest(dumps: Any) -> str:
    h = hashlib.sha256()
    for member in _CORPUS:
        h.update(dumps(member) + b"\n")
    return h.hexdigest()


@pytest.mark.subprocess
def test_asyncmembers_json_env_selects_the_fallback_with_the_same_bytes() -> None:
    code = (
        "from asyncmembers import _json; from tests.test_runtime import _digest; "
        "print(_json.BACKEND, _digest(_json.dumps))"
    )
    env = {**os.environ, "ASYNCMEMBERS_JSON": "json", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend, digest = proc.stdout.split()
    assert backend == "json"
    assert digest == _digest(_json._std_dumps)
    if HAVE_ORJSON:
        import orjson

        assert _json.BACKEND == "orjson" or os.environ.get("ASYNCMEMBERS_JSON") == "json"
        assert digest == _digest(orjson.dumps)
