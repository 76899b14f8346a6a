"""The member list of a GET: parsed whole when small, streamed through ijson when large.

Both paths must agree on every body a server can send: the same members for a good list,
a ProtocolError of the same kind for a bad one, and never the access token, however the
server spelled it or wherever a chunk boundary cut it. The corpus goes through both here
(the streamed path forced by setting the size limit to zero), cut into chunks at every
kind of boundary. A job against a small instance never imports ijson (checked in a fresh
process).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from asyncmembers import ProtocolError, _streaming
from asyncmembers._streaming import WHOLE_BODY_BYTES, iter_members
from asyncmembers._transport import Transport

PATH = "/instances/x/members"
SECRET = b"sekrit-token-123456"
TRANSPORT = Transport(
    headers={"Authorization": f"Bearer {SECRET.decode()}"},
    timeout=aiohttp.ClientTimeout(total=1),
    session=None,
    max_connections=1,
    max_response_bytes=1 << 20,
    secrets=(SECRET.decode(),),
    max_retry_after=60.0,
)


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def parse(body: bytes, *, chunk: int, streamed: bool) -> list[dict[str, Any]] | str:
    """The members, or the first words of the ProtocolError, via the chosen path."""
    saved = _streaming.WHOLE_BODY_BYTES
    if streamed:
        _streaming.WHOLE_BODY_BYTES = 0  # type: ignore[misc]
    try:
        return [m async for m in iter_members(_chunks(body, chunk), PATH, TRANSPORT)]
    except ProtocolError as exc:
        # "not JSON" or "does not look like InstanceMembers"; any server text quoted after
        # it is scrubbed.
        kind = exc.message.split("(")[0].split(":")[0].strip()
        return kind + (" LEAKED" if SECRET.decode() in str(exc) else "")
    finally:
        _streaming.WHOLE_BODY_BYTES = saved  # type: ignore[misc]


MEMBER = (
    b'{"userId":"u1","email":"ann@example.com","role":"edit","extra":{"a":[1,{"b":null}]},'
    b'"name":"\\u00c5sa \\"q\\" \\\\ ]}[{"}'
)
AGREE = {
    "one member": b'{"items":[' + MEMBER + b'],"count":1}',
    "members and non-objects": b'{"count":3,"items":['
    + MEMBER
    + b',1,"x",null,[],'
    + MEMBER
    + b"]}",
    "whitespace around": b'  \n {"items": [ ' + MEMBER + b" ] }\n ",
    "items after other keys": b'{"a":{"items":1},"items":[' + MEMBER + b"]}",
    "brackets in strings": b'{"items":[{"email":"[[[[{{{{","role":"view"}]}',
    "numbers in members": b'{"items":[{"email":"a@b.c","n":1.5,"m":-2,"e":1e3,"z":0.1}]}',
    "not an object": b"[1,2,3]",
    "html": b"<html>" + SECRET + b"</html>",
    "no items": b'{"count":3}',
    "truncated": b'{"items":[' + MEMBER,
    "empty body": b"",
    "only whitespace": b"   ",
    "garbage after": b'{"items":[]} x',
    "deep": b'{"items":[' + b"[" * 70 + b"]" * 70 + b"]}",
    "very deep": b'{"items":' + b"[" * 100_000,
    "invalid escape": b'{"items":[{"email":"\\x"}]}',
    "the token in bad JSON": b'{"items":[' + SECRET + b"]}",
    "the token in a member": b'{"items":[{"email":"a@b.c","note":"x' + SECRET + b'y"}]}',
    "the token escaped in a member": (
        b'{"items":[{"email":"a@b.c","'
        + b"".join(b"\\u%04x" % c for c in SECRET)
        + b'":"'
        + b"".join(b"\\u%04x" % c for c in SECRET)
        + b'"}]}'
    ),
}


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("name", sorted(AGREE))
async def test_whole_and_streamed_parsing_agree(name: str, chunk: int) -> None:
    body = AGREE[name]
    if len(body) > 2000 and chunk < 64:
        pytest.skip("byte-by-byte on a 100 KB body only repeats the 64-byte case, slowly")
    whole = await parse(body, chunk=chunk, streamed=False)
    streamed = await parse(body, chunk=chunk, streamed=True)
    assert whole == streamed, (whole, streamed)
    assert "LEAKED" not in str(whole)
    assert SECRET.decode() not in repr(whole)
    if name == "numbers in members":
        # the same types either way (floats, not Decimal): a report serialises them alike
        assert whole == [{"email": "a@b.c", "n": 1.5, "m": -2, "e": 1000.0, "z": 0.1}]
        assert [type(v) for v in whole[0].values()] == [str, float, int, float, float]
    if name.startswith("the token in a"):
        assert whole == [{"email": "a@b.c", "note": "x***y"}]
    if name.startswith("the token escaped"):
        assert whole == [{"email": "a@b.c", "***": "***"}]
    good = (
        "one",
        "members",
        "numbers",
        "whitespace",
        "items after",
        "brackets",
        "the token in a",
        "the token e",
    )
    if name.startswith(good):
        assert isinstance(whole, list) and whole, whole
    else:
        assert isinstance(whole, str), whole


async def test_whole_parsing_is_stricter_where_streaming_cannot_tell() -> None:
    # A streamed parser matches the path items.item, which also names the key "item" of
    # an object; parsed whole, items must be a list.
    body = b'{"items":{"item":{"email":"a@b.c"}}}'
    assert await parse(body, chunk=8, streamed=True) == [{"email": "a@b.c"}]
    assert "InstanceMembers" in str(await parse(body, chunk=8, streamed=False))


@pytest.mark.parametrize(
    ("count", "refused"),
    [(b"6", True), (b"3", False), (b"2", False), (b"true", False), (b'"6"', False), (None, False)],
)
async def test_a_list_whose_count_says_more_members_than_it_holds_is_refused(
    count: bytes | None, refused: bool
) -> None:
    """A page of a longer list, or a list cut short: read as the instance, its missing
    members were "not a member" to remove_members (an outside attack: three members
    skipped, still on the server). Parsed whole (up to 64 KiB) the count is checked;
    a count that is not a number, or not more than the items, is left alone."""
    items = b",".join(b'{"email":"m%d@x.com","role":"view"}' % i for i in range(3))
    body = b'{"items":[' + items + b"]" + (b',"count":' + count if count else b"") + b"}"
    got = await parse(body, chunk=16, streamed=False)
    if refused:
        assert isinstance(got, str) and "says the instance has 6 members but lists 3" in got
    else:
        assert isinstance(got, list) and len(got) == 3


async def test_a_streamed_body_with_no_member_is_refused() -> None:
    # An empty list is a few bytes, always parsed whole. A body streamed because it is over
    # 64 KiB yet holding no member at items[] has its list elsewhere or none at all: read
    # as "no members", a sync would plan against an empty instance.
    body = b'{"items":[],"count":0}'
    assert await parse(body, chunk=8, streamed=False) == []
    assert "InstanceMembers" in str(await parse(body, chunk=8, streamed=True))
    padded = b'{"pad":"' + b"x" * WHOLE_BODY_BYTES + b'","items":[1,2,"three"]}'
    assert "InstanceMembers" in str(await parse(padded, chunk=4096, streamed=False))


async def test_a_body_just_over_the_limit_is_streamed_and_complete() -> None:
    n = WHOLE_BODY_BYTES // len(MEMBER) + 2
    body = b'{"items":[' + b",".join([MEMBER] * n) + b"]}"
    assert len(body) > WHOLE_BODY_BYTES
    for chunk in (1000, 65536, len(body)):
        got = await parse(body, chunk=chunk, streamed=False)
        assert isinstance(got, list) and len(got) == n


CHILD = """
import sys
from asyncmembers import Client, bulk_import, sync_members
from asyncmembers._runtime import run
from asyncmembers.testing import FakeLosantServer

async def main(existing):
    async with FakeLosantServer() as server:
        for i in range(existing):
            server.add_member(server.instance_id, email=f"old{i}@example.com")
        iid = server.instance_id
        async with Client(server.token, url=server.url) as client:
            rows = [{"email": f"new{i}@example.com", "role": "view"} for i in range(100)]
            added = await bulk_import(client, instanceId=iid, members=rows)
            # A dry-run sync reads the whole member list before it plans.
            synced = await sync_members(client, instanceId=iid, members=rows, dry_run=True)
    assert added.created == 100 and synced.unchanged == 100, (added, synced)
    print("ijson" in sys.modules)

run(main(int(sys.argv[1])))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(("existing", "loaded"), [(3, "False"), (2000, "True")])
def test_ijson_is_loaded_only_for_a_member_list_too_large_to_parse_whole(
    existing: int, loaded: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(existing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == loaded


async def test_a_string_running_past_the_limit_is_refused_and_a_long_one_is_not() -> None:
    # ijson keeps every level's key path: long keys times depth is its memory. A string
    # may run MAX_STRING_BYTES past the chunk it began in (here 128 KiB), no further.
    from asyncmembers._streaming import MAX_STRING_BYTES

    def body(n: int) -> bytes:
        return b'{"items":[{"email":"a@b.c","' + b"k" * n + b'":1}]}'

    too_long = await parse(body(MAX_STRING_BYTES + 200_000), chunk=65536, streamed=False)
    assert "not JSON" in str(too_long), too_long
    fine = await parse(body(MAX_STRING_BYTES // 2), chunk=65536, streamed=False)
    assert isinstance(fine, list) and len(fine) == 1
