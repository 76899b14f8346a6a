"""Resource hygiene: nothing is left open or running, whatever way a call ends.

The embedded server runs on its own thread and event loop, so every task, socket and
aiohttp object in the test's loop belongs to the client. After normal use, after errors
of every kind, after cancellation (mid-import, mid-request, mid-lookup) and after closing
a client under a running request: no task is left pending, ``gc.collect()`` finds no
unclosed session, connector or file (no ``ResourceWarning``, nothing reported to the
loop's exception handler), and the process's file descriptors return to where they were.
A session the caller owns is left open; the client's own is closed; a closed client
raises ``ClientClosedError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import asyncmembers as am
from asyncmembers.sources import SourceError, open_source
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "hygiene-secret-token"
FAST = am.RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, timeout=10)


class ThreadedServer:
    """A FakeLosantServer on its own thread and loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID])
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self.thread.start()
        self.call(self.server.start())

    def stop(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    def set_faults(self, faults: Faults) -> None:
        async def assign() -> None:
            self.server.faults = faults

        self.call(assign())

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def srv() -> Iterator[ThreadedServer]:
    s = ThreadedServer()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def describe_fds() -> list[str]:
    """Every open descriptor with its target and, for a TCP socket, its ends and state
    (from /proc/net/tcp*): what a failure of the check below needs to be explained."""
    sockets: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    f = line.split()
                    local, remote = (int(x.rsplit(":", 1)[1], 16) for x in (f[1], f[2]))
                    sockets[f[9]] = f"tcp :{local} -> :{remote} state {f[3]}"
        except OSError:
            pass
    out = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else ""
        out.append(f"{fd}: {target}" + (f" ({sockets[inode]})" if inode in sockets else ""))
    return out


async def _first_connection_of_the_loop() -> None:
    """Make one connection, so descriptors a loop opens once for its lifetime are open.

    uvloop (libuv) opens a spare /dev/null descriptor at a loop's first connection and
    keeps it until the loop closes: not a leak, but it would count as one below.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        _, writer = await asyncio.open_connection(*listener.getsockname())
        writer.close()
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def leaves_nothing_behind() -> AsyncIterator[None]:
    """Assert that the block leaves no task, unclosed object or descriptor behind."""
    await _first_connection_of_the_loop()
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, ctx: reported.append(str(ctx.get("message"))))
    tasks_before = asyncio.all_tasks()
    fds_before = open_fds()
    before = describe_fds()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            for _ in range(3):  # let connection closing callbacks run
                await asyncio.sleep(0)
            gc.collect()
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, leaks
    assert not reported, reported
    left = [t for t in asyncio.all_tasks() - tasks_before if not t.done()]
    assert not left, left
    for _ in range(250):  # up to 5 s: the server thread closes its side a moment later
        if open_fds() <= fds_before:
            break
        await asyncio.sleep(0.02)
    assert open_fds() <= fds_before, (fds_before, open_fds(), before, describe_fds())


def rows(n: int, prefix: str = "h") -> list[dict[str, str]]:
    return [{"email": f"{prefix}{i}@example.com", "role": "view"} for i in range(n)]


# -- normal use and errors ------------------------------------------------------------------


async def test_normal_use_leaves_nothing(srv: ThreadedServer, tmp_path: Path) -> None:
    async with leaves_nothing_behind():
        async with am.Client(TOKEN, url=srv.url) as client:
            await client.instance_members.post(
                instanceId=IID, member={"email": "n@example.com", "role": "view"}
            )
            await client.instance_members.get(instanceId=IID)
            result = await am.bulk_import(
                client, instanceId=IID, members=rows(50), concurrency=8, journal=tmp_path / "j"
            )
            assert result.created == 50
        assert client.closed


async def test_errors_of_every_kind_leave_nothing(srv: ThreadedServer) -> None:
    async with leaves_nothing_behind():
        async with am.Client(TOKEN, url=srv.url, retry=FAST, timeout=0.2) as client:
            res = client.instance_members
            with pytest.raises(am.NotFoundError):
                await res.get(instanceId="575ec8687ae143cd83dc4a00")
            with pytest.raises(am.ValidationError):
                await res.get(instanceId="x")
            srv.set_faults(Faults(error_rate=1.0))
            with pytest.raises(am.ServerError):
                await res.post(instanceId=IID, member={"email": "e@example.com", "role": "view"})
            srv.set_faults(Faults(drop_before_commit_rate=0.5, drop_after_commit_rate=0.5))
            with contextlib.suppress(am.TransportError):
                await res.post(instanceId=IID, member={"email": "d@example.com", "role": "view"})
            srv.set_faults(Faults(stall_rate=1.0, stall_seconds=30))
            with pytest.raises(am.TransportError):
                await res.get(instanceId=IID)
            srv.set_faults(Faults())
        async with am.Client("wrong", url=srv.url) as client:
            with pytest.raises(am.UnauthorizedError):
                await am.bulk_import(client, instanceId=IID, members=rows(100))
        async with am.Client(TOKEN, url="http://127.0.0.1:9", retry=FAST) as client:
            with pytest.raises(am.TransportError):
                await client.instance_members.get(instanceId=IID)


async def test_a_client_that_is_never_used_or_closed_twice_leaves_nothing() -> None:
    async with leaves_nothing_behind():
        client = am.Client(TOKEN, url="http://127.0.0.1:9")
        await client.close()
        await client.close()
        async with am.Client(TOKEN, url="http://127.0.0.1:9"):
            pass


# -- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 3, 25])
async def test_cancelling_an_import_leaves_nothing(
    srv: ThreadedServer, tmp_path: Path, after: int
) -> None:
    srv.set_faults(Faults(latency=0.02, drop_after_commit_rate=0.1, error_rate=0.1))
    journal = tmp_path / "j.journal"
    async with leaves_nothing_behind(), am.Client(TOKEN, url=srv.url, retry=FAST) as client:
        reached = asyncio.Event()

        def on_outcome(o: am.Outcome) -> None:
            if o.index >= after:
                reached.set()

        task = asyncio.create_task(
            am.bulk_import(
                client,
                instanceId=IID,
                members=iter(rows(5000)),
                concurrency=16,
                journal=journal,
                on_outcome=on_outcome,
            )
        )
        if after:
            await reached.wait()
        else:
            await asyncio.sleep(0.01)  # during the first listing of the instance
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # The journal was closed and is whole: it can be read and appended to at once.
    journal.open("a").close()


async def test_cancelling_a_source_import_closes_the_file(
    srv: ThreadedServer, tmp_path: Path
) -> None:
    srv.set_faults(Faults(latency=0.02))
    path = tmp_path / "m.csv"
    path.write_text("email,role\n" + "".join(f"f{i}@example.com,view\n" for i in range(2000)))
    async with leaves_nothing_behind(), am.Client(TOKEN, url=srv.url) as client:
        with open_source(path) as source:
            task = asyncio.create_task(am.bulk_import(client, instanceId=IID, members=source))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_file_that_fails_part_way_is_closed(srv: ThreadedServer, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('email,role\na@example.com,view\nb@example.com,"view\nc@example.com,view\n')
    async with leaves_nothing_behind(), am.Client(TOKEN, url=srv.url) as client:
        source = open_source(path)
        with pytest.raises(SourceError) as info:
            await am.bulk_import(client, instanceId=IID, members=source)
        assert info.value.result is not None and info.value.result.total == 1


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.03, 0.06, 0.12])
async def test_cancelling_a_post_at_any_moment_leaves_nothing(
    srv: ThreadedServer, delay: float
) -> None:
    """Cut after commit with latency: the cancel lands in the POST, the wait or the lookup."""
    srv.set_faults(Faults(latency=0.025, drop_after_commit_rate=0.5))
    async with leaves_nothing_behind(), am.Client(TOKEN, url=srv.url, retry=FAST) as client:
        for i in range(4):
            task = asyncio.create_task(
                client.instance_members.post(
                    instanceId=IID, member={"email": f"c{delay}-{i}@example.com", "role": "view"}
                )
            )
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # The client still works after its calls were cancelled.
        srv.set_faults(Faults())
        await client.instance_members.get(instanceId=IID)


async def test_closing_the_client_under_a_running_call_ends_it_with_a_losant_error(
    srv: ThreadedServer,
) -> None:
    srv.set_faults(Faults(latency=0.2))
    async with leaves_nothing_behind():
        client = am.Client(TOKEN, url=srv.url, retry=FAST)
        calls = [
            asyncio.create_task(client.instance_members.get(instanceId=IID)),
            asyncio.create_task(
                client.instance_members.post(
                    instanceId=IID, member={"email": "u@example.com", "role": "view"}
                )
            ),
            asyncio.create_task(am.bulk_import(client, instanceId=IID, members=rows(20, "under"))),
        ]
        await asyncio.sleep(0.05)
        await client.close()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        # Ended, and with an error of this package (never aiohttp's RuntimeError).
        assert isinstance(outcome, am.LosantError), repr(outcome)


async def test_closing_the_client_mid_import_stops_it_at_once(srv: ThreadedServer) -> None:
    """Like a revoked token: every later row would fail the same way, so it is fatal.

    (Failing every row of a ten-million-row input one by one would also keep ten million
    failures in memory.)
    """
    srv.set_faults(Faults(latency=0.02))
    read = 0

    def endless() -> Iterator[dict[str, str]]:
        nonlocal read
        for i in range(1_000_000):
            read += 1
            yield {"email": f"mid{i}@example.com", "role": "view"}

    async with leaves_nothing_behind():
        client = am.Client(TOKEN, url=srv.url)
        some_done = asyncio.Event()
        task = asyncio.create_task(
            am.bulk_import(
                client,
                instanceId=IID,
                members=endless(),
                concurrency=8,
                on_outcome=lambda o: some_done.set(),
            )
        )
        await some_done.wait()
        await client.close()
        with pytest.raises(am.ClientClosedError) as info:
            await asyncio.wait_for(task, timeout=10)
    partial = info.value.result
    assert partial is not None and partial.created > 0
    assert partial.failures == []
    assert read < 1000


# -- closing under an answer that is arriving -------------------------------------------------


class SlowListServer:
    """An API on its own thread and loop whose member list never finishes arriving.

    ``GET .../members`` sends its head and the first bytes of the list (``{"items":[``)
    and nothing more; a POST answers at once with the member sent. ``client_port`` is the
    port of the connection the list went out on.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sent = asyncio.Event()  # of the test's loop, set from the server's thread
        self.test_loop: asyncio.AbstractEventLoop | None = None
        self.client_port = 0
        self.port = 0
        self.added = 0
        self.runner: web.AppRunner | None = None

    async def _list(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"items":[')
        assert request.transport is not None
        self.client_port = request.transport.get_extra_info("peername")[1]
        assert self.test_loop is not None
        self.test_loop.call_soon_threadsafe(self.sent.set)
        await asyncio.Event().wait()  # cancelled when the client goes away
        return resp

    async def _add(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.added += 1
        return web.json_response(
            {"userId": f"{self.added:024x}", "email": body["email"], "role": body["role"]}
        )

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/instances/{instanceId}/members", self._list)
        app.router.add_post("/instances/{instanceId}/members", self._add)
        # The list's handler is cancelled when its client goes away (and, should a test
        # fail with the client still open, after a second at cleanup).
        self.runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SlowListServer:
        self.test_loop = asyncio.get_running_loop()
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()

    async def list_head_read(self) -> None:
        """Return once the client has read all that was sent of the list.

        Then aiohttp has parsed the answer's head and the call reads its body, which
        never ends: both ends of the connection have nothing queued (the server's bytes
        were received, and read by the client's event loop).
        """
        await self.sent.wait()
        ends = [(self.port, self.client_port), (self.client_port, self.port)]
        # The kernel's queues signal nothing: they are looked at until both are empty.
        while any(_tcp_queues(local, remote) != (0, 0) for local, remote in ends):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        # The bytes were parsed as they were read; the call's task was woken then, and
        # runs before this one's next step (callbacks run in order): it leaves the wait
        # for the head (where a close already ended it) and waits for the body.
        await asyncio.sleep(0)


def _tcp_queues(local: int, remote: int) -> tuple[int, int] | None:
    """(bytes not yet acknowledged, bytes not yet read) of the loopback TCP connection
    from port ``local`` to port ``remote``, from ``/proc/net/tcp``."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            ports = (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16))
            if ports == (local, remote) and fields[3] == "01":  # ESTABLISHED
                sending, unread = fields[4].split(":")
                return int(sending, 16), int(unread, 16)
    return None


async def test_closing_the_client_while_an_answer_arrives_ends_the_call_at_once() -> None:
    """aiohttp wakes a call waiting for an answer's head when its session closes, but not
    one reading the body: that read waited out the attempt timeout (30 s by default), then
    failed as "timed out waiting for the server". close() now ends it with
    ClientClosedError at once."""
    with SlowListServer() as server:
        async with leaves_nothing_behind():
            client = am.Client(TOKEN, url=server.url, retry=FAST)
            call = asyncio.create_task(client.instance_members.get(instanceId=IID))
            await server.list_head_read()
            await client.close()
            with pytest.raises(am.ClientClosedError, match="closed while this call was running"):
                await call


async def test_closing_the_client_while_the_import_streams_the_members_ends_it() -> None:
    """The import's background read of the members, mid-stream, is the only call left
    when the client closes (every row is done, and a read that has shown no member yet is
    waited for): it ends at once, and so does the import, with ClientClosedError and the
    partial result; no connection, descriptor or task is left. (It waited out the
    attempt timeout, then the import went on without the read and returned normally.)"""
    with SlowListServer() as server:
        async with leaves_nothing_behind():
            client = am.Client(TOKEN, url=server.url, retry=FAST)
            rows_done = asyncio.Event()
            outcomes: list[am.Outcome] = []

            async def members() -> AsyncIterator[dict[str, str]]:
                await server.list_head_read()  # the read is streaming before any row
                for row in rows(3, "streamed"):
                    yield row

            def on_outcome(outcome: am.Outcome) -> None:
                outcomes.append(outcome)
                if len(outcomes) == 3:
                    rows_done.set()

            task = asyncio.create_task(
                am.bulk_import(client, instanceId=IID, members=members(), on_outcome=on_outcome)
            )
            await rows_done.wait()
            await client.close()
            with pytest.raises(am.ClientClosedError) as info:
                await task
    assert [o.kind for o in outcomes] == ["created"] * 3
    partial = info.value.result
    assert partial is not None and partial.created == 3 and partial.total == 3


# -- ownership and use after close ----------------------------------------------------------


async def test_a_callers_session_is_left_open_and_the_clients_own_is_closed(
    srv: ThreadedServer,
) -> None:
    async with leaves_nothing_behind():
        async with aiohttp.ClientSession() as session:
            async with am.Client(TOKEN, url=srv.url, session=session) as client:
                await client.instance_members.get(instanceId=IID)
            assert not session.closed
            async with session.get(
                f"{srv.url}/instances/{IID}/members", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp:
                assert resp.status == 200  # still usable
            with pytest.raises(am.ClientClosedError):
                await client.instance_members.get(instanceId=IID)

        owned = am.Client(TOKEN, url=srv.url)
        await owned.instance_members.get(instanceId=IID)
        inner = owned._session.transport._session
        assert inner is not None and not inner.closed
        await owned.close()
        assert inner.closed
        assert inner.connector is None or inner.connector.closed


async def test_use_after_close_raises_client_closed_error(srv: ThreadedServer) -> None:
    async with leaves_nothing_behind():
        client = am.Client(TOKEN, url=srv.url)
        async with client:
            await client.instance_members.get(instanceId=IID)
        for call in (
            client.instance_members.get(instanceId=IID),
            client.instance_members.post(
                instanceId=IID, member={"email": "z@example.com", "role": "view"}
            ),
            am.bulk_import(client, instanceId=IID, members=rows(3)),
        ):
            with pytest.raises(am.ClientClosedError, match="closed"):
                await call
        async with client:  # entering again does not reopen it
            with pytest.raises(am.ClientClosedError):
                await client.instance_members.get(instanceId=IID)
        # Closed before first use: the same.
        unused = am.Client(TOKEN, url=srv.url)
        await unused.close()
        with pytest.raises(am.ClientClosedError):
            await unused.instance_members.get(instanceId=IID)


async def test_a_session_the_caller_closed_raises_client_closed_error(srv: ThreadedServer) -> None:
    async with leaves_nothing_behind():
        session = aiohttp.ClientSession()
        client = am.Client(TOKEN, url=srv.url, session=session)
        await session.close()
        with pytest.raises(am.ClientClosedError, match="ClientSession given to Client is closed"):
            await client.instance_members.get(instanceId=IID)
        await client.close()
