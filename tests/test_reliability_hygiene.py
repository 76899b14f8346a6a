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
    assert open_fds() <= fds_before, (fds_before, open_fds(), os.listdir("/proc/self/fd"))


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
