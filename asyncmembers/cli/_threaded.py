"""Rows of input that can block (standard input, a FIFO), read in a thread of their own.

A pipe whose producer is slow or stalled blocks every read of it. Read on the event loop,
it froze the whole command: the rows already read were not sent, requests in flight were
not answered, and neither SIGTERM nor a second one was acted on until more input or the
end of it came. :class:`ThreadedRows` reads such a :class:`~asyncmembers.sources.Source`
in a daemon thread and hands its rows to the engine as an async iterator, at most
:data:`LIMIT` rows ahead of it (bounded memory). A stopped run leaves the thread where
it is (a read cannot be interrupted); being a daemon, it does not hold the process.

Regular files are read on the loop as before: their reads never wait for a producer.
"""

from __future__ import annotations

import asyncio
import collections
import io
import os
import stat
import sys
import threading
from typing import Any, Final

from ..sources import Source

__all__ = ["LIMIT", "InputRows", "ThreadedRows", "can_block", "detached_stdin"]

#: Rows read ahead of the engine, at most.
LIMIT: Final = 4096


def can_block(file: str) -> bool:
    """True when reading ``file`` (``-`` for standard input) may wait for a producer."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode if file == "-" else os.stat(file).st_mode
    except (AttributeError, OSError, ValueError):  # no descriptor: an in-memory stdin
        return False  # (or open_source says what is wrong with the file)
    return not stat.S_ISREG(mode)


def detached_stdin() -> io.FileIO:
    """Standard input as a file of its own (a duplicate descriptor, no buffer lock).

    The reading thread may be blocked in it when the process exits; ``sys.stdin``'s
    buffered reader, closed at interpreter shutdown, would then wait for that thread's
    lock and abort the process.
    """
    return io.FileIO(os.dup(sys.stdin.fileno()), "rb")


class ThreadedRows:
    """An async iterator over ``source``'s rows, read in a daemon thread."""

    def __init__(
        self, source: Source, *, owned: io.FileIO | None = None, limit: int = LIMIT
    ) -> None:
        self.source = source
        self._owned = owned  # closed after the source (a detached standard input)
        self._limit = limit
        self._rows: collections.deque[Any] = collections.deque()
        self._lock = threading.Condition()
        self._done = False  # the thread has finished reading
        self._error: BaseException | None = None
        self._closing = False
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def columns(self) -> tuple[str, ...] | None:
        return self.source.columns

    def __aiter__(self) -> ThreadedRows:
        return self

    async def __anext__(self) -> Any:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._read, name="asyncmembers-input", daemon=True
            )
            self._thread.start()
        while True:
            with self._lock:
                if self._rows:
                    if len(self._rows) == self._limit:
                        self._lock.notify()  # the reader waits for room
                    return self._rows.popleft()
                if self._done:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    raise StopAsyncIteration
                assert self._loop is not None
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def _read(self) -> None:
        try:
            for row in self.source:
                with self._lock:
                    while len(self._rows) >= self._limit and not self._closing:
                        self._lock.wait()
                    if self._closing:
                        break
                    self._rows.append(row)
                    self._wake()
        except BaseException as exc:  # a SourceError at line N: raised in the loop
            with self._lock:
                self._error = exc
        finally:
            with self._lock:
                self._done = True
                self._wake()
                close = self._closing
            if close:
                self._close_source()

    def _wake(self) -> None:
        # Called with the lock held: wake the loop only if it waits for a row.
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading. The source is closed now, or by the thread once its read returns."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            now = self._thread is None or self._done
        if now:
            self._close_source()

    def _close_source(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.source.close()
        finally:
            if self._owned is not None:
                self._owned.close()


#: What a file command reads its rows from.
InputRows = Source | ThreadedRows


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # cancelled meanwhile (the run stopped)
        waiter.set_result(None)
