"""bulk_import against the embedded server over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import asyncmembers as am
from asyncmembers.bulk import DEDUPE_WINDOW, Outcome
from asyncmembers.testing import FakeLosantServer, Faults

IID = "575ec8687ae143cd83dc4a97"
OTHER_IID = "575ec8687ae143cd83dc4a98"
TOKEN = "bulk-secret-token"
FAST_RETRY = am.RetryPolicy(attempts=8, wait_initial=0.005, wait_max=0.05, timeout=60)


def rows_with_mess(n: int) -> tuple[list[dict[str, str]], set[int], set[str]]:
    """n valid rows, with invalid rows and duplicates mixed in.

    Returns the rows, the indices of invalid rows, and the distinct valid emails.
    """
    rows: list[dict[str, str]] = []
    invalid: set[int] = set()
    emails: set[str] = set()
    for i in range(n):
        email = f"user{i}@example.com"
        rows.append({"email": email, "role": "admin" if i % 3 == 0 else "view"})
        emails.add(email)
        if i % 40 == 7:
            invalid.add(len(rows))
            rows.append({"email": f"broken{i}@", "role": "view"})
        if i % 55 == 9:
            invalid.add(len(rows))
            rows.append({"email": f"x{i}@example.com", "role": "owner"})
        if i % 30 == 4:  # duplicate, differing only in letter case and whitespace
            rows.append({"email": f"  USER{i}@Example.com ", "role": "view"})
    return rows, invalid, emails


def server_emails(server: FakeLosantServer, iid: str = IID) -> list[str]:
    return [m["email"].lower() for m in server.members(iid)]


@pytest.fixture
async def server() -> AsyncIterator[FakeLosantServer]:
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"], "reader": ["all.Instance.read"]},
        instances=[IID, OTHER_IID],
        seed=3,
    ) as s:
        yield s


@pytest.fixture
async def client(server: FakeLosantServer) -> AsyncIterator[am.Client]:
    async with am.Client(TOKEN, url=server.url, retry=FAST_RETRY) as c:
        yield c


@pytest.mark.parametrize(("seed", "concurrency"), [(11, 64), (12, 4)])
async def test_soak_every_fault_at_once(seed: int, concurrency: int) -> None:
    faults = Faults(
        latency=0.002,
        error_rate=0.05,
        rate_limit=1500.0,
        drop_before_commit_rate=0.03,
        drop_after_commit_rate=0.03,
    )
    rows, invalid, emails = rows_with_mess(2000)
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, seed=seed
    ) as srv:
        async with am.Client(TOKEN, url=srv.url, retry=FAST_RETRY) as c:
            result = await am.bulk_import(
                c, instanceId=IID, members=iter(rows), concurrency=concurrency
            )
        got = server_emails(srv)
        stats = srv.stats
    assert sorted(got) == sorted(emails)  # exactly the valid rows, once each
    assert {f.index for f in result.failures} == invalid
    assert all(isinstance(f.error, am.ValidationError) for f in result.failures)
    assert result.failures_by_type() == {"ValidationError": len(invalid)}
    assert result.total == len(rows) == result.created + result.skipped + len(result.failures)
    assert result.created == len(emails)
    assert result.skipped == len(rows) - len(emails) - len(invalid)
    assert stats.posts_applied == len(emails)
    assert stats.faults["drop_after_commit"] > 0 and stats.faults["error"] > 0  # faults did fire
    assert result.retries > 0


async def test_failure_carries_index_and_row_as_given(
    client: am.Client, server: FakeLosantServer
) -> None:
    bad = {"email": "nope", "role": "view"}
    rows = [{"email": "a@example.com", "role": "view"}, bad, {"userId": "123", "role": "view"}]
    result = await am.bulk_import(client, instanceId=IID, members=rows)
    assert [(f.index, f.member) for f in result.failures] == [(1, bad), (2, rows[2])]
    assert result.failures[1].error.field == "userId"  # type: ignore[attr-defined]
    assert not result.ok
    assert server.stats.by_status[400] == 0  # invalid rows were never sent


async def test_already_members_are_skipped_naming_their_role(
    client: am.Client, server: FakeLosantServer
) -> None:
    server.add_member(IID, email="Old@Example.com", role="view")
    server.add_member(IID, email="same@example.com", role="admin")
    rows = [
        {"email": "old@example.com", "role": "admin"},
        {"email": "new@example.com", "role": "view"},
        {"email": "SAME@example.com", "role": "admin"},
    ]
    result = await am.bulk_import(client, instanceId=IID, members=rows)
    assert (result.created, result.updated, result.skipped) == (1, 0, 2)
    # A differing role is never skipped silently: the reason names the current role.
    assert result.skipped_by_reason == {"already a member with role view": 1, "already a member": 1}
    assert server.stats.posts_applied == 1
    assert {m["email"].lower(): m["role"] for m in server.members(IID)}["old@example.com"] == "view"
    assert result.ok


async def test_duplicates_beyond_the_window_are_still_added_once(
    client: am.Client, server: FakeLosantServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("asyncmembers.bulk._importer.DEDUPE_WINDOW", 2)
    rows = [{"email": f"u{i}@example.com", "role": "view"} for i in range(5)]
    rows.append({"email": "U0@example.com", "role": "view"})  # far back: server says "already"
    rows.append({"email": "u4@example.com", "role": "view"})  # recent: skipped locally
    result = await am.bulk_import(client, instanceId=IID, members=rows, concurrency=1)
    assert len(server.members(IID)) == 5
    assert result.skipped_by_reason == {"already a member": 1, "duplicate in input": 1}
    assert DEDUPE_WINDOW >= 10_000


async def test_outcomes_are_reported_as_they_happen(client: am.Client) -> None:
    seen: list[Outcome] = []
    rows = [
        {"email": "a@example.com", "role": "view"},
        {"email": "a@example.com", "role": "view"},
        {"email": "b", "role": "view"},
    ]
    result = await am.bulk_import(client, instanceId=IID, members=rows, on_outcome=seen.append)
    by_index = {o.index: o for o in seen}
    assert len(seen) == 3
    assert by_index[0].kind == "created"
    assert (by_index[1].kind, by_index[1].reason) == ("skipped", "duplicate of row 0")
    assert by_index[2].kind == "failed" and isinstance(by_index[2].error, am.ValidationError)
    assert result.requests >= 2 and result.elapsed > 0 and result.rows_per_second > 0


async def test_async_iterable_input(client: am.Client, server: FakeLosantServer) -> None:
    async def gen() -> AsyncIterator[am.InstanceMemberPost]:
        for i in range(50):
            await asyncio.sleep(0)
            yield am.InstanceMemberPost(role=am.Role.VIEW, email=f"async{i}@example.com")

    result = await am.bulk_import(client, instanceId=IID, members=gen(), concurrency=8)
    assert result.created == 50
    assert len(server.members(IID)) == 50


async def test_input_is_consumed_lazily(client: am.Client) -> None:
    read = 0
    progress: list[tuple[int, int]] = []

    def gen() -> Iterator[dict[str, str]]:
        nonlocal read
        for i in range(400):
            read += 1
            yield {"email": f"lazy{i}@example.com", "role": "view"}

    def on_outcome(o: Outcome) -> None:
        progress.append((read, o.index))

    await am.bulk_import(
        client, instanceId=IID, members=gen(), concurrency=4, on_outcome=on_outcome
    )
    # At every outcome, the reader was never more than a small bounded distance ahead.
    ahead = max(r - done_count for done_count, (r, _) in enumerate(progress, 1))
    assert ahead <= 4 * 2 + 2, ahead
    assert read == 400


async def test_pool_never_exceeds_concurrency(server: FakeLosantServer) -> None:
    """A spy on the wire: aiohttp's trace hooks count the rows' requests in flight.

    (The one background read of the member list runs beside the pool, so that rows never
    wait for it; it is not a row's request.)
    """
    in_flight = peak = 0

    async def start(_s: Any, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        nonlocal in_flight, peak
        if params.method == "POST":
            in_flight += 1
            peak = max(peak, in_flight)

    async def end(_s: Any, _c: Any, params: Any) -> None:
        nonlocal in_flight
        if params.method == "POST":
            in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(end)
    server.faults = Faults(latency=0.01)
    rows = [{"email": f"c{i}@example.com", "role": "view"} for i in range(200)]
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        am.Client(TOKEN, url=server.url, session=session) as c,
    ):
        result = await am.bulk_import(c, instanceId=IID, members=rows, concurrency=7)
    assert result.created == 200
    assert peak == 7  # reached, never exceeded


@pytest.mark.parametrize(
    ("token", "iid", "error"),
    [
        ("wrong-token", IID, am.UnauthorizedError),
        ("reader", IID, am.ForbiddenError),
        (TOKEN, "575ec8687ae143cd83dc4a00", am.NotFoundError),
    ],
)
async def test_fatal_error_stops_at_once(
    server: FakeLosantServer, token: str, iid: str, error: type[am.LosantError]
) -> None:
    read = 0

    def gen() -> Iterator[dict[str, str]]:
        nonlocal read
        for i in range(10_000):
            read += 1
            yield {"email": f"f{i}@example.com", "role": "view"}

    async with am.Client(token, url=server.url) as c:
        with pytest.raises(error) as info:
            await am.bulk_import(c, instanceId=iid, members=gen(), concurrency=8)
    partial = info.value.result
    assert partial is not None
    assert partial.failures == []  # not thousands of identical failures
    assert read < 100
    assert server.stats.requests < 20


async def test_fatal_error_mid_run_keeps_partial_result(server: FakeLosantServer) -> None:
    async with am.Client(TOKEN, url=server.url) as c:

        def gen() -> Iterator[dict[str, str]]:
            for i in range(1000):
                if i == 30:
                    server._tokens.clear()  # the token is revoked mid-run
                yield {"email": f"m{i}@example.com", "role": "view"}

        with pytest.raises(am.UnauthorizedError) as info:
            await am.bulk_import(c, instanceId=IID, members=gen(), concurrency=2)
    partial = info.value.result
    assert partial is not None
    assert partial.created == len(server.members(IID)) > 0
    assert partial.total < 100


def _is_server_task(task: asyncio.Task[Any]) -> bool:
    """The embedded server shares the test's loop; its handler tasks are not ours."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = code.co_filename if code is not None else ""
    return "aiohttp/web_" in filename or "asyncmembers/testing" in filename


async def test_cancellation_leaves_nothing_behind(server: FakeLosantServer, tmp_path: Path) -> None:
    server.faults = Faults(latency=0.05)
    journal = tmp_path / "j.jsonl"
    rows = ({"email": f"k{i}@example.com", "role": "view"} for i in range(10_000))
    before = asyncio.all_tasks()
    async with am.Client(TOKEN, url=server.url) as c:
        twenty_done = asyncio.Event()

        def on_outcome(o: Outcome) -> None:
            if o.index >= 20:
                twenty_done.set()

        task = asyncio.create_task(
            am.bulk_import(
                c,
                instanceId=IID,
                members=rows,
                concurrency=16,
                journal=journal,
                on_outcome=on_outcome,
            )
        )
        await twenty_done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() - before if not _is_server_task(t)]
        assert left == []  # no worker or feeder task left behind
    # Everything journaled as created is really there; the journal file is closed and whole.
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    created = {e["key"][2:] for e in entries if e.get("outcome") == "created"}
    assert created <= set(server_emails(server))
    assert created


async def test_journal_resume_after_interruption(server: FakeLosantServer, tmp_path: Path) -> None:
    journal = tmp_path / "import.journal"
    rows = [{"email": f"j{i}@example.com", "role": "view"} for i in range(60)]
    rows.append({"email": "bad", "role": "view"})
    async with am.Client(TOKEN, url=server.url) as c:
        first = await am.bulk_import(c, instanceId=IID, members=rows[:25], journal=journal)
        assert first.created == 25
        # A torn last line, as a kill in the middle of a write leaves it.
        with journal.open("a") as f:
            f.write('{"row": 25, "key": "e:j25@exa')
        second = await am.bulk_import(c, instanceId=IID, members=rows, journal=journal)
    assert second.skipped_by_reason == {"done in an earlier run": 25}
    assert second.created == 35
    assert [f.index for f in second.failures] == [60]
    assert sorted(server_emails(server)) == sorted(r["email"] for r in rows[:60])


async def test_journal_for_another_instance_is_refused(client: am.Client, tmp_path: Path) -> None:
    journal = tmp_path / "j"
    await am.bulk_import(client, instanceId=IID, members=[], journal=journal)
    with pytest.raises(am.ValidationError, match="belongs to instance"):
        await am.bulk_import(client, instanceId=OTHER_IID, members=[], journal=journal)


async def test_dry_run_sends_no_post(client: am.Client, server: FakeLosantServer) -> None:
    server.add_member(IID, email="old@example.com", role="view")
    rows = [
        {"email": "old@example.com", "role": "view"},
        {"email": "new@example.com", "role": "view"},
        {"email": "new@example.com", "role": "admin"},
        {"email": "bad", "role": "view"},
    ]
    result = await am.bulk_import(client, instanceId=IID, members=rows, dry_run=True)
    assert result.dry_run
    assert (result.created, result.skipped, len(result.failures)) == (1, 2, 1)
    assert server.stats.posts_applied == 0
    assert len(server.members(IID)) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"max_rate": 0}, "max_rate"),
        ({"instanceId": "x"}, "instanceId"),
    ],
)
async def test_bad_settings_are_refused_at_the_call(
    client: am.Client, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"instanceId": IID, "members": [], **kwargs}
    with pytest.raises(am.ValidationError) as info:
        await am.bulk_import(client, **args)
    assert info.value.field == field


async def test_rows_that_know_their_line_number(client: am.Client) -> None:
    class Row(SimpleNamespace):
        def to_member_post(self) -> am.InstanceMemberPost:
            try:
                return am.InstanceMemberPost(role=self.role, email=self.email)
            except am.ValidationError as exc:
                raise am.ValidationError(
                    f"line {self.line}: {exc.message}", field=exc.field
                ) from exc

    rows = [Row(line=2, email="ok@example.com", role="view"), Row(line=3, email="bad", role="view")]
    result = await am.bulk_import(client, instanceId=IID, members=rows)
    [failure] = result.failures
    assert failure.member is rows[1]
    assert str(failure.error).startswith("line 3: email")


async def test_rate_limited_server_pauses_together_and_loses_nothing() -> None:
    faults = Faults(rate_limit=300.0, rate_limit_burst=30.0)
    rows = [{"email": f"r{i}@example.com", "role": "view"} for i in range(600)]
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults
    ) as srv:
        async with am.Client(TOKEN, url=srv.url) as c:
            result = await am.bulk_import(c, instanceId=IID, members=rows, concurrency=32)
        assert len(srv.members(IID)) == 600
        assert result.rate_limited == srv.stats.by_status[429] > 0
    assert result.ok
    # Adaptive pacing: far fewer 429s than rows (a naive client gets hundreds here).
    assert result.rate_limited < 100


async def test_outcomes_count_each_rows_retries() -> None:
    faults = Faults(error_rate=0.3)
    rows = [{"email": f"retry{i}@example.com", "role": "view"} for i in range(200)]
    outcomes: list[Outcome] = []
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], faults=faults, seed=9
    ) as srv:
        async with am.Client(TOKEN, url=srv.url, retry=FAST_RETRY) as c:
            result = await am.bulk_import(
                c, instanceId=IID, members=rows, concurrency=8, on_outcome=outcomes.append
            )
        errors_answered = sum(n for status, n in srv.stats.by_status.items() if status >= 500)
        assert srv.stats.posts_applied == len(rows)
    per_row = sum(o.retries for o in outcomes)
    assert per_row == result.retries > 0
    # Each re-sent POST follows a 5xx (some 5xx answered a confirming GET instead).
    assert result.retries <= errors_answered
    assert any(o.retries >= 2 for o in outcomes)


async def test_journal_write_failure_mid_run_stops_with_the_partial_result(
    client: am.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the journal stops the import with a clear error and its result."""
    import errno

    from asyncmembers.bulk import _journal

    class FillingFile:
        def __init__(self, real: Any) -> None:
            self.real, self.writes = real, 0

        def write(self, text: str) -> int:
            self.writes += 1
            if self.writes > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.real.write(text))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    real_init = _journal.Journal.__init__

    def init(self: _journal.Journal, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self._file = FillingFile(self._file)  # type: ignore[assignment]

    monkeypatch.setattr(_journal.Journal, "__init__", init)
    rows = [{"email": f"full{i}@example.com", "role": "view"} for i in range(50)]
    with pytest.raises(am.LosantError, match=r"cannot write journal .*No space left") as info:
        await am.bulk_import(
            client, instanceId=IID, members=rows, journal=tmp_path / "j", concurrency=2
        )
    # The raised error is a copy with .result (LosantError.with_result), caused by the
    # original, which is caused by the OSError.
    chain: list[BaseException] = []
    cause: BaseException | None = info.value
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    assert any(isinstance(c, OSError) for c in chain), chain
    assert info.value.result is not None
    assert 4 <= info.value.result.total < 50
