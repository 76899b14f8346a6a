"""Input that can block (a pipe, a FIFO) is read in a thread: the same rows, the same
errors, bounded read-ahead, a close that does not wait for the producer.

The lifecycle attacks (``test_attack_lifecycle.py``) show the stop; these show that
nothing else changed for piped input.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from asyncmembers.cli._threaded import ThreadedRows
from asyncmembers.sources import SourceError, open_source
from tests.test_cli_subprocess import HANG_GUARD, IID, TOKEN, Server, _env, cli
from tests.test_cli_subprocess import server as server  # the fixture

ROWS = (
    "email,role\n"
    + "".join(f"user{i}@example.com,view\n" for i in range(40))
    + "bad-email,view\n"  # line 42: a row error, reported
    + "".join(f"more{i}@example.com,admin\n" for i in range(10))
)


def _import(server: Server, source: str, **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli(
            "--url",
            server.url,
            "--token",
            TOKEN,
            "import",
            source,
            "--instance",
            IID,
            "--no-progress",
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=HANG_GUARD,
        check=False,
        **popen,  # type: ignore[arg-type]
    )


def test_piped_input_is_imported_as_the_file_is(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    path.write_text(ROWS, encoding="utf-8")
    piped = _import(server, "-", input=ROWS)
    assert piped.returncode == 1, piped.stderr  # one row failed
    again = _import(server, str(path))  # every valid row is now a member: skipped
    assert again.returncode == 1, again.stderr
    assert re.search(r"Created\s+50\b", piped.stdout), piped.stdout
    assert re.search(r"Failed\s+1\b", piped.stdout), piped.stdout
    assert re.search(r"Skipped\s+50\b", again.stdout), again.stdout


def test_a_fifo_path_is_imported_through_the_reading_thread(server: Server, tmp_path: Path) -> None:
    fifo = tmp_path / "members.csv"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "w", encoding="utf-8") as f:
            f.write(ROWS)

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    done = _import(server, str(fifo))
    feeding.join(timeout=10)  # (a writer left waiting is a daemon thread)
    assert done.returncode == 1, done.stderr
    assert re.search(r"Created\s+50\b", done.stdout), done.stdout


def _source(n: int) -> object:
    body = "email,role\n" + "".join(f"u{i}@example.com,view\n" for i in range(n))
    return open_source(body.encode(), format="csv")


async def test_threaded_rows_keep_their_order_and_read_a_bounded_way_ahead() -> None:
    source = _source(100)
    rows = ThreadedRows(source, limit=8)  # type: ignore[arg-type]
    seen = []
    async for row in rows:
        seen.append(row.fields["email"])
        await asyncio.sleep(0.001)  # a slow consumer: the reader must wait for room
        assert len(rows._rows) <= 8
    assert seen == [f"u{i}@example.com" for i in range(100)]
    rows.close()


async def test_threaded_rows_raise_the_source_error_in_the_loop() -> None:
    body = b"email,role\na@example.com,view\n" + b"x" * (1 << 21) + b",view\n"
    rows = ThreadedRows(open_source(body, format="csv"))
    assert (await anext(rows)).fields["email"] == "a@example.com"
    with pytest.raises(SourceError, match=r"line 3: the row is longer"):
        await anext(rows)
    rows.close()


async def test_closing_threaded_rows_while_the_reader_waits_does_not_hang() -> None:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    os.write(write_fd, b"email,role\na@example.com,view\n")
    source = open_source(reader, format="csv")
    rows = ThreadedRows(source)
    first = await asyncio.wait_for(anext(rows), HANG_GUARD)
    assert first.fields["email"] == "a@example.com"
    waiting = asyncio.ensure_future(anext(rows))  # the thread now blocks on the pipe
    await asyncio.sleep(0.05)
    waiting.cancel()
    rows.close()  # returns at once; the thread closes the source when its read returns
    os.close(write_fd)  # EOF: the thread ends
    assert rows._thread is not None
    rows._thread.join(HANG_GUARD)
    assert not rows._thread.is_alive()
    reader.close()
