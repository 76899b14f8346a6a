"""Attacks on how the client reads an instance's member list (``GET .../members``).

A hostile or broken server answers the list endpoint; each test here shows one defect in
how that answer is read, whole (a small answer) or streamed in chunks (a large one), and
says what should happen instead. Every test fails on the code it was written against.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from aiohttp import web

import asyncmembers as am

from .test_hostile_server import serve

IID = "575ec8687ae143cd83dc4a97"
UID = "675ed18f7ae143cd83dc4bb7"
# A long token (shorter ones are not masked by design).
TOKEN = "tok-L1st1ng-" + "9f86d081884c7d659a2feaa0" + "Zq8Xw2Rt"
FAST = am.RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.01, timeout=10)


def _members(n: int) -> list[str]:
    return [
        f'{{"userId":"5{i:023x}","email":"old{i}@example.com","role":"view"}}' for i in range(n)
    ]


# -- 1. a huge integer crashes the process ---------------------------------------------------

_BIG_INT_CHILD = textwrap.dedent(
    """
    import asyncio
    from aiohttp import web
    import asyncmembers as am

    IID = "575ec8687ae143cd83dc4a97"
    items = [
        '{"userId":"5%023x","email":"old%d@example.com","role":"view"}' % (i, i)
        for i in range(3000)
    ]
    # A member with a counter the server got wrong: a 4,301-digit integer (one more digit
    # than Python's int-from-string limit).
    items.append('{"userId":"6%023x","email":"z@example.com","role":"view","loginCount":%s}'
                 % (0, "9" * 4301))
    BODY = ('{"items":[' + ",".join(items) + '],"count":3001}').encode()

    async def handler(request):
        return web.Response(body=BODY, content_type="application/json")

    async def main():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = "http://127.0.0.1:%d" % runner.addresses[0][1]
        try:
            async with am.Client("tok-" + "x" * 40, url=url,
                                 retry=am.RetryPolicy(attempts=1, timeout=30)) as client:
                try:
                    result = await am.sync_members(client, instanceId=IID, members=[],
                                                   dry_run=True)
                except am.LosantError as exc:
                    print("error", type(exc).__name__, exc)
                else:
                    print("result", result)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    """
)


def test_a_huge_integer_in_a_streamed_member_list_does_not_crash_the_process() -> None:
    """A member list over 64 KiB (streamed through ijson's yajl2_c backend) holding one
    integer of 4,301 digits (say a member's ``loginCount``) kills the whole Python process
    with SIGSEGV: yajl2_c builds the number with ``int()``, which refuses more than
    ``sys.int_info.default_max_str_digits`` (4,300) digits, and the backend then
    dereferences the failed result. The same body parsed whole (orjson) is a clean
    ``ProtocolError``. Nothing in the client guards against it, so any server (or proxy)
    can crash a ``sync``, ``import``, ``remove`` or userId lookup, losing the run's state.
    It should be a ``ProtocolError`` (or the number kept as text), and the process should
    live; here a child process runs a dry-run sync and must exit normally."""
    proc = subprocess.run(
        [sys.executable, "-c", _BIG_INT_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, (
        f"the child died with {proc.returncode} (-11 is SIGSEGV): {proc.stderr[-1500:]}"
    )
    assert proc.stdout.startswith(("error ProtocolError", "result")), proc.stdout


# -- 2. a large answer without an items array reads as an empty instance -----------------------


async def test_a_large_answer_without_an_items_array_is_a_protocol_error() -> None:
    """A broken proxy wraps the answer: ``{"result": {"items": [...3,000 members...]}}``.
    Parsed whole (under 64 KiB) that is a ``ProtocolError`` ("does not look like
    InstanceMembers"). Streamed (over 64 KiB), the check is only that the bytes
    ``"items"`` occurred somewhere, so the nested key (or a string value ``"items"``, or
    ``"items": null``) passes, nothing matches ``items.item`` at the top, and the answer
    is read as an instance with no members: a sync plans ``current=0`` and adds
    everything, ``remove`` skips every row as "not a member", a userId lookup says "not
    there". The streamed path should raise the same ``ProtocolError`` as the whole one
    when the top-level object has no ``items`` array."""
    body = ('{"result":{"items":[' + ",".join(_members(3000)) + '],"count":3000}}').encode()
    assert len(body) > 64 * 1024

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    plans: list[Any] = []
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        try:
            result = await am.sync_members(
                client,
                instanceId=IID,
                members=[{"email": "old1@example.com", "role": "view"}],
                dry_run=True,
                on_plan=plans.append,
            )
        except am.ProtocolError:
            return
    raise AssertionError(
        f"a listing without a top-level items array was read as {plans[0].current} members "
        f"(plan {plans[0]!r}; result {result!r})"
    )


# -- 3. prune removes a member the list names -----------------------------------------------


async def test_prune_never_removes_a_member_listed_with_whitespace_around_its_email() -> None:
    """The server lists a member with its email padded (``" Ann@Example.com "``). The
    desired row ``ann@example.com`` (rows are stripped) matches no member of the table
    (listing emails are lower-cased but not stripped), so it is planned as an addition;
    its POST is answered "already a member", so the row ends ``unchanged`` -- and then
    the very same member (its userId) is DELETEd as "not in the list". A prune must never
    remove a member the list names: the listing's emails should be compared the way
    rows are (stripped), or such a member withheld from the removals as a member listed
    without an email is."""
    deletes: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            member = {"userId": UID, "email": " Ann@Example.com ", "role": "view"}
            return web.json_response({"items": [member], "count": 1})
        if request.method == "DELETE":
            deletes.append(request.path)
            return web.json_response({"success": True})
        if request.method == "POST":
            return web.json_response(
                {"type": "BadRequest", "message": "User is already a member of this instance"},
                status=400,
            )
        return web.json_response({"type": "NotFound", "message": "no"}, status=404)

    outcomes: list[am.Outcome] = []
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        await am.sync_members(
            client,
            instanceId=IID,
            members=[{"email": "ann@example.com", "role": "view"}],
            prune=True,
            max_removals=5,
            on_outcome=outcomes.append,
        )
    assert deletes == [], f"the member the list names was removed: {deletes}; outcomes: {outcomes}"


# -- 4. memory grows ~30x the body through long keys ------------------------------------------

_KEYS_RSS_CHILD = textwrap.dedent(
    """
    import asyncio, resource
    from aiohttp import web
    import asyncmembers as am

    IID = "575ec8687ae143cd83dc4a97"
    CAP = 8 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024 ** 3, 3 * 1024 ** 3))

    # 62 nested objects (under the 64-level guard), each under one 130,000-byte key.
    KEY = b'"' + b"k" * 130_000 + b'":{'
    BODY = b'{"items":[],"x":{' + KEY * 62 + b"}" * 62 + b'},"count":0}'
    assert len(BODY) < CAP

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    async def handler(request):
        return web.Response(body=BODY, content_type="application/json")

    async def main():
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = "http://127.0.0.1:%d" % runner.addresses[0][1]
        before = peak_mb()
        try:
            async with am.Client("t", url=url, max_response_bytes=CAP,
                                 retry=am.RetryPolicy(attempts=1, timeout=60)) as client:
                try:
                    await am.sync_members(client, instanceId=IID, members=[], dry_run=True)
                    outcome = "no error"
                except am.LosantError as exc:
                    outcome = type(exc).__name__
        finally:
            await runner.cleanup()
        print(f"{before:.1f} {peak_mb():.1f} {len(BODY)} {outcome}")

    asyncio.run(main())
    """
)


def test_long_keys_in_a_streamed_list_do_not_multiply_memory() -> None:
    """ijson keeps, per open nesting level, the dotted path of keys leading to it: the
    depth guard (64 levels) bounds the count of those strings, not their length. A body
    of 62 nested objects under 130 KB keys (8 MB, inside an 8 MiB ``max_response_bytes``)
    makes ijson hold 62 prefixes of up to 8 MB each: the peak RSS grows by ~250 MB,
    about 30 times the cap (at the default 256 MiB cap that is ~8 GB). Memory should stay
    within a small multiple of the cap whatever the body (the same bound as
    ``test_hostile_server.test_memory_stays_bounded_whatever_the_body``): e.g. refuse
    keys longer than a member's fields can be, or count key bytes in the guard."""
    proc = subprocess.run(
        [sys.executable, "-c", _KEYS_RSS_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after, size, outcome = proc.stdout.strip().split(maxsplit=3)
    growth_mb = float(after) - float(before)
    assert growth_mb < 8 * 16, (
        f"a {int(size) / 1e6:.1f} MB answer grew the peak RSS by {growth_mb:.0f} MB ({outcome})"
    )


# -- 5. a quadratic scan holds the event loop past the timeout ---------------------------------


def test_an_unclosed_string_of_escaped_quotes_is_scanned_in_linear_time() -> None:
    """``DepthGuard`` strips complete strings with a regex; a string that does not close
    within the bytes scanned made the regex try again from every quote inside it, each
    try running to the end: quadratic time. A 32 KB answer ``{"items":[{"email":"\\"\\"
    \\"...`` (cut, under the 64 KiB whole-body limit) held the event loop for ~3 s (64 KB:
    ~13 s) in one synchronous call, so ``RetryPolicy(timeout=0.5)`` could not end it and
    every other task of the loop starved. The guard must scan in linear time.

    No wall-clock threshold: a 1 MB chunk of escaped quotes is fed to the guard in a child
    process given 60 s. Linear, that is milliseconds; quadratic, about an hour."""
    proc = subprocess.run(
        [sys.executable, "-c", _QUOTES_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "3"], proc.stdout  # inside the string, 3 deep


async def test_an_unclosed_string_of_escaped_quotes_is_a_protocol_error() -> None:
    body = b'{"items":[{"email":"' + b'\\"' * 16_000

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError, match="not JSON"):
            await am.sync_members(client, instanceId=IID, members=[], dry_run=True)


_QUOTES_CHILD = r"""
from asyncmembers._streaming import DepthGuard
guard = DepthGuard()
guard.feed(b'{"items":[{"email":"' + b'\\"' * 500_000)
print(guard.in_string, guard.depth)
"""


# -- 6. the token, spelled with one escape, is quoted in errors ---------------------------------


async def test_token_spelled_with_an_escape_is_not_quoted_in_listing_errors() -> None:
    """When the list answer is not what it should be, the error quotes the server's raw
    bytes, masked only where they hold the token literally. A server that echoes the token
    with its first character as a JSON escape (``\\u0074ok-...``) gets it shown, one
    escape away from plain, in the ``ProtocolError`` of ``instance_members.get`` (an
    answer that is not JSON, quoted up to 200 bytes) and of a sync's streamed read (an
    answer that is not an object, quoted up to 80 bytes); the CLI prints both to stderr.
    A decoded answer is masked after decoding, a quoted one is not. Quoted server text
    should be masked in its escaped spellings too (or not quoted when it holds escapes)."""

    def spelled(auth: str) -> str:
        token = auth.split()[-1]
        return f"\\u{ord(token[0]):04x}" + token[1:]

    async def handler(request: web.Request) -> web.StreamResponse:
        esc = spelled(request.headers.get("Authorization", ""))
        if "sortField" in request.query:  # get(): an answer that is not JSON
            return web.Response(
                text='{"items": ["' + esc + '" oops', content_type="application/json"
            )
        return web.Response(text='["' + esc + '"]', content_type="application/json")

    errors: list[BaseException] = []
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        try:
            await client.instance_members.get(instanceId=IID, sortField="email")
        except am.ProtocolError as exc:
            errors.append(exc)
        try:
            await am.sync_members(client, instanceId=IID, members=[], dry_run=True)
        except am.ProtocolError as exc:
            errors.append(exc)
    assert len(errors) == 2, errors
    for exc in errors:
        text = str(exc) + repr(exc)
        unescaped = re.sub(r"\\+u0074", "t", text)  # undo the one escape, however quoted
        assert TOKEN not in unescaped, f"the token, one escape away: {exc}"
