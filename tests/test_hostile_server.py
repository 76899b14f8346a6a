"""Real hostile servers on loopback (issue 10): every outcome must be the truthful one.

Each test runs an aiohttp.web app (or a raw asyncio socket server) that misbehaves the way
a broken proxy, a compromised host or a buggy backend would, and asserts what the client
reports against what the server actually stored: nothing counted created that the server
did not store, nothing sent to another origin, memory bounded, the token never shown.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

import asyncmembers as am

IID = "575ec8687ae143cd83dc4a97"
UID = "675ed18f7ae143cd83dc4bb7"
TOKEN = "tok-H0STILE-9f86d081884c7d659a2feaa0"
FAST = am.RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.01, timeout=10)
MEMBERS = f"/instances/{IID}/members"
ROWS = [{"email": f"row{i}@example.com", "role": "view"} for i in range(5)]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """An aiohttp.web app answering every path with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    try:
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class Store:
    """What a hostile server really stored, and every request it saw."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.seen: list[str] = []

    def listing(self) -> web.Response:
        return web.json_response({"items": list(self.members.values()), "count": len(self.members)})

    async def add(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        member = {
            "userId": f"{len(self.members) + 1:024x}",
            "email": body["email"],
            "role": body["role"],
        }
        self.members[body["email"].lower()] = member
        return member

    def filtered(self, request: web.Request) -> web.Response:
        wanted = request.query.get("filter", "").lower()
        items = [m for k, m in self.members.items() if not wanted or k == wanted]
        return web.json_response({"items": items, "count": len(items)})


def text_of(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [repr(v) for v in vars(exc).values()]
    return "\n".join(parts)


# -- 1. redirects --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirected_post_is_never_counted_created_and_never_followed(status: int) -> None:
    """A 3xx to a POST: aiohttp would resend it as a GET (301-303) and take the list as
    "the new member", or send the email to another origin (307/308). Now: RedirectError,
    fatal, the import stops with its result, nothing created, the other origin untouched."""
    other = Store()

    async def elsewhere(request: web.Request) -> web.Response:
        other.seen.append(f"{request.method} {request.path}")
        return other.listing()

    store = Store()
    async with serve(elsewhere, host="localhost") as other_url:

        async def handler(request: web.Request) -> web.StreamResponse:
            store.seen.append(request.method)
            if request.method == "POST":
                return web.Response(
                    status=status, headers={"Location": f"{other_url}{request.path}"}
                )
            return store.listing()

        async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
            with pytest.raises(am.RedirectError) as info:
                await am.bulk_import(client, instanceId=IID, members=ROWS, concurrency=1)
    err = info.value
    assert err.status == status and err.fatal and "localhost" in str(err)
    assert err.result is not None and err.result.created == 0
    assert store.members == {} and other.seen == []
    assert store.seen.count("POST") == 1  # stopped at once, not once per row


# -- 2. successes checked for what they claim ----------------------------------------------


async def test_post_answered_with_the_wrong_shape_is_not_counted_created() -> None:
    """A POST answered ``200 [1,2,3]`` by a server that stored nothing: every row failed."""
    store = Store()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response([1, 2, 3])
        return store.filtered(request)

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        result = await am.bulk_import(client, instanceId=IID, members=ROWS, concurrency=2)
    assert (result.created, len(result.failures)) == (0, len(ROWS))
    assert all(isinstance(f.error, am.ProtocolError) for f in result.failures)
    assert store.members == {}


async def test_wrong_shape_success_that_was_stored_is_confirmed_by_lookup() -> None:
    """The same answer from a server that did store the member: the lookup confirms it."""
    store = Store()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            await store.add(request)
            return web.json_response({"ok": True})
        return store.filtered(request)

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        result = await am.bulk_import(client, instanceId=IID, members=ROWS, concurrency=2)
    assert (result.created, len(result.failures)) == (len(ROWS), 0)
    assert len(store.members) == len(ROWS)


async def test_post_answered_with_another_member_fails() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response({"email": "mallory@example.com", "role": "admin"})
        return web.json_response({"items": []})

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError, match="other than the member sent"):
            await client.instance_members.post(instanceId=IID, member=ROWS[0])


# -- 3. bounded responses ------------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import asyncio, gzip, resource, sys, zlib
    import asyncmembers as am

    IID = "575ec8687ae143cd83dc4a97"
    MODE = sys.argv[1]
    CAP = 8 * 1024 * 1024
    # A regression must fail here, not take the shared machine down with it.
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024 ** 3, 3 * 1024 ** 3))

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def gzip_bomb(inflated):
        comp = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = bytes(1024 * 1024)
        out = [comp.compress(block) for _ in range(inflated // len(block))]
        out.append(comp.flush())
        return b"".join(out)

    BOMB = gzip_bomb(1024 ** 3) if MODE == "gzip" else b""

    async def handle(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        if MODE == "endless":
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Transfer-Encoding: chunked\\r\\n\\r\\n")
            chunk = b'{"items":[' + b'{"email":"a@b.co"},' * 3000
            framed = b"%x\\r\\n" % len(chunk) + chunk + b"\\r\\n"
            try:
                while True:
                    writer.write(framed)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
        elif MODE == "huge-length":
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Length: 2000000000\\r\\n\\r\\n" + b"[" * 1000)
            await writer.drain()
            await asyncio.sleep(5)
        else:
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Encoding: gzip\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(BOMB))
            writer.write(BOMB)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = "http://127.0.0.1:%d" % server.sockets[0].getsockname()[1]
        before = peak_mb()
        async with am.Client("t", url=url, max_response_bytes=CAP,
                             retry=am.RetryPolicy(attempts=1, timeout=60), timeout=60) as c:
            try:
                await c.instance_members.get(instanceId=IID)
            except am.LosantError as exc:
                outcome = type(exc).__name__ + ": " + str(exc)
            else:
                outcome = "no error"
        server.close()
        print(f"{before:.1f} {peak_mb():.1f} {outcome}")

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("mode", ["endless", "huge-length", "gzip"])
def test_memory_stays_bounded_whatever_the_body(mode: str) -> None:
    """An endless body, a 2 GB Content-Length, and a 1 MB gzip that inflates to 1 GiB: each
    stops at the 8 MiB cap with a clear error, and the peak RSS grows by a small multiple
    of the cap, not by the body (measured in a child process, relative to its own start)."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after, outcome = proc.stdout.strip().split(" ", 2)
    assert outcome.startswith("ProtocolError") and "max_response_bytes=8388608" in outcome, outcome
    growth_mb = float(after) - float(before)
    # Unbounded, these grow by 100s of MB to GBs (the gzip one peaked at 2.1 GB before).
    assert growth_mb < 8 * 16, f"peak RSS grew by {growth_mb:.0f} MB: {outcome}"


async def test_deep_json_is_a_protocol_error_everywhere() -> None:
    """100,000-deep JSON from every endpoint: get, post, the list streamed by bulk_import."""
    deep = b"[" * 100_000 + b"]" * 100_000
    deep_obj = b'{"items": ' + deep + b"}"

    async def handler(request: web.Request) -> web.StreamResponse:
        body = deep_obj if request.method == "GET" else deep
        return web.Response(body=body, content_type="application/json")

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError, match="not JSON"):
            await client.instance_members.get(instanceId=IID)
        with pytest.raises(am.ProtocolError):
            await client.instance_members.post(instanceId=IID, member=ROWS[0])
        with pytest.raises(am.ProtocolError, match="nested deeper"):
            await am.bulk_import(client, instanceId=IID, members=ROWS)


# -- 4. truthful "may have been applied" ---------------------------------------------------


@pytest.mark.parametrize("status", [503, 502])
async def test_5xx_after_commit_is_confirmed_by_lookup_not_resent(status: int) -> None:
    """A proxy answers 503 after the backend stored the member: the client looks it up and
    counts it created; the server (which does not deduplicate) got exactly one POST."""
    store = Store()
    posts = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal posts
        if request.method == "POST":
            posts += 1
            await store.add(request)
            return web.json_response({"type": "Unavailable", "message": "busy"}, status=status)
        return store.filtered(request)

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        result = await am.bulk_import(client, instanceId=IID, members=ROWS[:1])
    assert (result.created, result.skipped, len(result.failures)) == (1, 0, 0)
    assert posts == 1 and len(store.members) == 1


async def test_post_timeout_names_post_and_says_it_may_have_been_applied() -> None:
    store = Store()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            await store.add(request)
        await asyncio.sleep(5)  # every answer, the lookups too, comes too late
        return store.listing()

    policy = am.RetryPolicy(attempts=2, wait_initial=0, timeout=1.0)
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=policy, timeout=0.3) as c:
        with pytest.raises(am.TransportError) as info:
            await c.instance_members.post(instanceId=IID, member=ROWS[0])
    err = info.value
    assert err.method == "POST" and str(err).startswith("POST ")
    assert err.may_have_been_applied and "may have been applied" in str(err)


async def test_no_attempt_is_sent_with_a_uselessly_small_budget() -> None:
    """A pacing gate that lets the POST go only 5 ms before the budget ends: the POST is
    not sent (it could only time out, a needless "may have been applied")."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        await asyncio.sleep(1)
        return web.json_response({"items": []})

    class LateGate:
        def __init__(self) -> None:
            self.released: list[int | None] = []

        def try_acquire(self) -> bool:
            return False  # always makes the attempt wait in acquire()

        async def acquire(self, deadline: float) -> None:
            await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time() - 0.005))

        def release(self, method: str, status: int | None, retry_after: float | None) -> None:
            self.released.append(status)

    policy = am.RetryPolicy(attempts=3, wait_initial=0, timeout=0.5)
    gate = LateGate()
    post = am.InstanceMemberPost(role="view", email="late@example.com")
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=policy) as c:
        with pytest.raises(am.TransportError, match="too little for an attempt") as info:
            await c.instance_members.add_raw(f"/instances/{IID}/members", post, gate=gate)
    assert seen == []
    assert info.value.method == "POST" and not info.value.sent
    assert not info.value.may_have_been_applied
    assert gate.released == [None]


async def test_close_with_posts_in_flight_says_they_may_have_been_applied() -> None:
    store = Store()
    arrived = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            await store.add(request)
            arrived.set()
            await asyncio.sleep(5)
        return store.listing()

    async with serve(handler) as url:
        client = am.Client(TOKEN, url=url, retry=FAST)
        task = asyncio.create_task(client.instance_members.post(instanceId=IID, member=ROWS[0]))
        await arrived.wait()
        await client.close()
        with pytest.raises(am.ClientClosedError) as info:
            await task
    err = info.value
    assert err.may_have_been_applied and err.fatal and err.method == "POST"
    assert "POST" in str(err) and "may have been applied" in str(err)
    assert len(store.members) == 1  # the server did apply it: the error said so


# -- 5. quota exhausted --------------------------------------------------------------------


async def test_quota_exhausted_stops_bulk_import_at_once_with_its_result() -> None:
    """A 429 asking for an hour: the import stops at the first one (fatal, .result), with a
    message saying when to retry, instead of failing each row after a minute's pause."""
    posts = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal posts
        if request.method == "GET":
            return web.json_response({"items": []})
        posts += 1
        return web.json_response(
            {"type": "TooManyRequests", "message": "quota"},
            status=429,
            headers={"Retry-After": "3600"},
        )

    rows = [{"email": f"q{i}@example.com", "role": "view"} for i in range(100)]
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(am.RateLimitError) as info:
            await am.bulk_import(client, instanceId=IID, members=rows, concurrency=4)
        took = loop.time() - start
    err = info.value
    assert err.quota_exhausted and err.fatal and err.exit_status == 3
    assert err.retry_after == 3600 and "retry after" in str(err)
    assert err.result is not None and err.result.created == 0
    assert posts <= 4  # the workers in flight, not a hundred rows
    assert took < 30  # not 100 x 60 s of pauses (loose: a noisy shared machine)


# -- 6. secrets scrubbed from server text --------------------------------------------------


async def test_a_server_echoing_the_token_never_gets_it_shown() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if request.method == "GET" and "sortField" in request.query:
            return web.Response(status=200, text=f"not json {auth}", content_type="text/plain")
        if request.method == "GET" and "filter" not in request.query:
            return web.Response(
                status=200, text=f'{{"items": [ {auth}', content_type="application/json"
            )
        if request.method == "GET":
            return web.json_response({"items": []})
        return web.json_response(
            {"type": f"Echo {auth}", "message": f"you sent {auth}", "token": auth}, status=400
        )

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError) as got:
            await client.instance_members.get(instanceId=IID, sortField="email")
        with pytest.raises(am.ProtocolError) as streamed:
            await am.bulk_import(client, instanceId=IID, members=ROWS[:1])
        with pytest.raises(am.BadRequestError) as posted:
            await client.instance_members.post(instanceId=IID, member=ROWS[0])
    for err in (got.value, posted.value, streamed.value):
        assert TOKEN not in text_of(err)
    assert "***" in posted.value.message and TOKEN not in repr(posted.value.data)


@pytest.mark.parametrize("filler", [0, 3000], ids=["small list", "streamed list"])
@pytest.mark.parametrize("escaped", [False, True], ids=["raw", "escaped"])
async def test_a_member_list_echoing_the_token_never_gets_it_shown(
    filler: int, escaped: bool
) -> None:
    """A listing with the token in members' fields (raw, or spelled in JSON escapes that
    decode to it), in a list parsed whole or streamed in chunks that can cut the token:
    a prune's plan, outcomes and result never show it."""

    def spell(text: str) -> str:
        return "".join(f"\\u{ord(c):04x}" for c in text) if escaped else text

    echo = spell(TOKEN)
    items = [
        f'{{"userId":"5{i:023x}","email":"old{i}@example.com","role":"view"}}'
        for i in range(filler)
    ]
    items.append(
        f'{{"userId":"6{0:023x}","email":"x{echo}@example.com","role":"view",'
        f'"firstName":"{echo}","{echo}":"{echo}"}}'
    )
    body = ('{"count":' + str(len(items)) + ',"items":[' + ",".join(items) + "]}").encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for i in range(0, len(body), 1000):  # chunks that cut the token
            await resp.write(body[i : i + 1000])
        await resp.write_eof()
        return resp

    plans: list[Any] = []
    outcomes: list[Any] = []
    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        result = await am.sync_members(
            client,
            instanceId=IID,
            members=ROWS,
            prune=True,
            max_removals=len(items),
            dry_run=True,
            on_plan=plans.append,
            on_outcome=outcomes.append,
        )
    assert plans[0].current == len(items) and plans[0].remove == len(items)
    shown = repr(plans) + repr(outcomes) + repr(result) + str(result)
    assert TOKEN not in shown
    assert "x***@example.com" in shown


# -- 7. URLs and event loops ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:pa55word@api.example.com", "user name or password"),
        ("https://api.example.com/?x=1", "query"),
        ("https://api.example.com/#frag", "fragment"),
        ("https://api.example.com:99999", "not a valid URL"),
        ("https://api.example.com:0", "invalid port"),
        ("http://[::1", "not a valid URL"),
        ("https://exa mple.com", "invalid host"),
        ("ftp://api.example.com", "http(s)"),
    ],
)
def test_bad_urls_are_refused_at_construction(url: str, problem: str) -> None:
    with pytest.raises(am.ValidationError, match=problem) as info:
        am.Client(TOKEN, url=url)
    assert info.value.field == "url"
    assert "pa55word" not in text_of(info.value) and TOKEN not in text_of(info.value)


_SECOND_LOOP_SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, threading, warnings
    import asyncmembers as am
    from asyncmembers.testing import FakeLosantServer

    IID = "575ec8687ae143cd83dc4a97"
    warnings.simplefilter("error")
    unraisable = []
    import sys
    sys.unraisablehook = lambda u: unraisable.append(repr(u.exc_value))

    server_loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    async def serve():
        async with FakeLosantServer(tokens={"t": ["all.Instance"]}, instances=[IID]) as s:
            holder["url"], holder["stop"] = s.url, asyncio.Event()
            started.set()
            await holder["stop"].wait()

    thread = threading.Thread(target=server_loop.run_until_complete, args=(serve(),))
    thread.start()
    started.wait(30)
    client = am.Client("t", url=holder["url"])

    async def first():
        return (await client.instance_members.get(instanceId=IID)).count

    async def second():
        try:
            await client.instance_members.get(instanceId=IID)
        finally:
            await client.close()

    print("first", asyncio.run(first()))  # the client is not closed in this loop
    try:
        asyncio.run(second())
    except am.LosantError as exc:
        print("second", type(exc).__name__, exc)
    server_loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(30)
    server_loop.close()
    gc.collect()
    print("unraisable", unraisable)
    """
)


def test_a_client_used_from_a_second_loop_says_why() -> None:
    """asyncio.run(use(client)) twice: the second is a clear LosantError naming the loop,
    and the first loop's connections are closed with it (no ResourceWarning). In a child
    process: the test changes the process's event-loop state."""
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _SECOND_LOOP_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "first 0"
    assert lines[1].startswith("second LosantError") and "another event loop" in lines[1]
    assert lines[2] == "unraisable []"
    assert "ResourceWarning" not in proc.stderr, proc.stderr[-2000:]


async def test_a_success_body_holding_the_token_never_shows_it() -> None:
    """A 200 of the wrong shape that quotes the token: the ProtocolError (message, .data,
    repr) shows *** instead, also when the token falls at the edge of the quoted text."""

    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        pad = "x" * (190 - len("Bearer "))
        if request.method == "POST":
            return web.json_response({"echo": pad + auth})
        if "filter" in request.query:
            return web.json_response({"items": []})
        return web.json_response({"items": pad + auth})

    async with serve(handler) as url, am.Client(TOKEN, url=url, retry=FAST) as client:
        with pytest.raises(am.ProtocolError) as got:
            await client.instance_members.get(instanceId=IID, sortField="email")
        with pytest.raises(am.ProtocolError) as posted:
            await client.instance_members.post(instanceId=IID, member=ROWS[0])
    for err in (got.value, posted.value):
        text = text_of(err)
        assert TOKEN not in text and TOKEN[:12] not in text, text[:400]
