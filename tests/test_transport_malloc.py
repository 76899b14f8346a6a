"""The transport's one-time allocator adjustment (see ``_raise_malloc_mmap_threshold``).

asyncio's selector transports receive every answer into a fresh 256 KiB ``bytes``. Under
glibc's initial settings that block is a mapping of its own (mmap, page fault, mremap,
munmap per answer); after the adjustment it comes from the heap. Checked in a fresh
interpreter (one hash seed, so its start-up allocates the same way every time).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import asyncmembers as am
from asyncmembers import _transport

CHILD = r"""
import asyncmembers._transport as transport

def in_heap(obj):
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if start <= id(obj) < end:
                    return True
    return False

before = in_heap(bytes(256 * 1024))
transport._raise_malloc_mmap_threshold()
print(before, in_heap(bytes(256 * 1024)))
"""


@pytest.mark.subprocess
@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc"
)
def test_after_the_adjustment_a_receive_buffer_comes_from_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stdout.split()
    before, after = (word == "True" for word in out)
    if before:
        pytest.skip("this interpreter's start-up already adjusted the allocator")
    assert after, "a 256 KiB receive buffer is still a mapping of its own"


async def test_the_first_request_of_a_client_makes_the_adjustment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[int] = []
    monkeypatch.setattr(_transport, "_threshold_raised", False)
    monkeypatch.setattr(_transport, "bytes", lambda n: made.append(n) or b"", raising=False)
    async with am.Client("t" * 20, url="http://127.0.0.1:9") as client:
        with pytest.raises(am.LosantError):  # nothing listens on port 9
            await client.instance_members.get(instanceId="575ec8687ae143cd83dc4a97")
        with pytest.raises(am.LosantError):
            await client.instance_members.get(instanceId="575ec8687ae143cd83dc4a97")
    assert made == [_transport._THRESHOLD_BLOCK]  # once, however many requests follow
