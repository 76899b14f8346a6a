"""The engine under ``bulk_import``, ``sync_members`` and ``remove_members``: one pool,
three operations.

Shape: a feeder task turns the input into jobs (add, update role, remove) and puts only
those that need a request on a small bounded queue; a pool of at most ``concurrency``
workers (started as jobs need them) runs them through one shared :class:`Pacer` (429
pauses, adaptive rate). Every row ends
with exactly one outcome, counted once in the result, the :class:`Progress`, the journal
and ``on_outcome``; failures are counted by type and kept only as a bounded sample.

A fatal error (:attr:`LosantError.fatal`: 401, 403, unknown instance, closed client) or a
failing journal stops every task at once; a raising ``on_outcome`` stops the run once the
requests in flight have finished (so they are counted). Either way the error is raised
with the partial result attached (``.result``). Memory does not grow with the input: the
queue holds at most ``concurrency`` jobs and successes are counted, not kept.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, NoReturn, TypeVar

from .. import _schema
from ..client import Client
from ..errors import BadRequestError, LosantError, TransportError, ValidationError
from ..models import InstanceMemberPost, MemberLike
from ..resources import member_path
from ._digest import MemberTable
from ._journal import Journal
from ._pacing import Pacer
from ._result import (
    BulkResult,
    ItemFailure,
    Outcome,
    Progress,
    RemoveResult,
    StoppedError,
    SyncResult,
    _check_kept,
)

__all__ = [
    "ADD",
    "PATCH",
    "REMOVE",
    "Engine",
    "Job",
    "check_settings",
    "check_stop",
    "import_key",
    "member_keys",
    "new_engine",
    "run_engine",
]

logger = logging.getLogger("asyncmembers")

ADD, PATCH, REMOVE = 0, 1, 2

#: A job: (operation, row index, row as given, validated post or None, member keys,
#: userId of the member to change or None).
Job = tuple[int, int, object, InstanceMemberPost | None, tuple[str, ...], str | None]

Rows = Iterable[MemberLike] | AsyncIterable[MemberLike]

T = TypeVar("T")


class Stop(Exception):
    """Raised inside the task group to stop every task; carries the error to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def import_key(post: InstanceMemberPost) -> tuple[str, ...]:
    """The one identity an import can trust for a row: its userId if it has one, else email.

    The API resolves a row to a user by userId first; a row with both a userId and an
    email can therefore be a different user than another row with that email alone (the
    email may belong to another user), so the import matches, deduplicates and journals
    by the userId only; the server's "already a member" answer settles the rest.
    """
    if post.user_id is not None:
        return ("u:" + post.user_id.lower(),)
    assert post.email is not None
    return ("e:" + post.email.lower(),)


def member_keys(post: InstanceMemberPost) -> tuple[str, ...]:
    """Every identity a row names: ``u:`` + userId and/or ``e:`` + email, lower-cased.

    A sync matches a row to a current member by either (SPEC section 6), so that no member
    a row names by its email is ever removed.
    """
    if post.user_id is not None and post.email is not None:
        return ("u:" + post.user_id.lower(), "e:" + post.email.lower())
    if post.user_id is not None:
        return ("u:" + post.user_id.lower(),)
    assert post.email is not None
    return ("e:" + post.email.lower(),)


def is_fatal(exc: LosantError) -> bool:
    """True when ``exc`` stops the whole run.

    The errors errors.py classifies as fatal (401, 403, unknown instance, closed client,
    quota exhausted), and an API that could not be reached at all: a connection refused or
    timed out on connect after every retry (not a row's own wait at the gate, which is
    not retryable). Every later row would fail the same way, slowly; the run stops with
    that error instead (the CLI's exit 4) and a re-run with the journal resumes.
    """
    if exc.fatal:
        return True
    return isinstance(exc, TransportError) and not exc.sent and exc.retryable


def with_result(exc: BaseException, result: object) -> BaseException:
    """``exc`` with the partial result attached: a copy for a LosantError (whose cause is
    the original); the caller's own exception (from ``on_outcome``, ``on_plan`` or the
    rows' iterator) gets the attribute."""
    if isinstance(exc, LosantError):
        return exc.with_result(result)
    exc.result = result  # type: ignore[attr-defined]
    return exc


def raise_with_result(exc: BaseException, result: object) -> NoReturn:
    out = with_result(exc, result)
    if out is exc:
        # "from its own cause": keeps the cause it came with, drops the internal context.
        raise exc from exc.__cause__
    raise out


def check_settings(concurrency: object, max_rate: object, max_failures_kept: object) -> int | None:
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValidationError(
            f"concurrency must be a whole number of at least 1 (how many requests may be in "
            f"flight at once, e.g. 16), got {concurrency!r}",
            field="concurrency",
        )
    if max_rate is not None and (
        not isinstance(max_rate, int | float)
        or isinstance(max_rate, bool)
        or not 0 < max_rate < math.inf
    ):
        raise ValidationError(
            f"max_rate must be requests per second greater than zero, or None for no limit; "
            f"got {max_rate!r}",
            field="max_rate",
        )
    return _check_kept(max_failures_kept)


def check_progress(progress: object) -> Progress | None:
    if progress is None or isinstance(progress, Progress):
        return progress
    raise ValidationError(
        f"progress must be an asyncmembers.Progress or None, got {type(progress).__name__}",
        field="progress",
    )


def check_stop(stop: object) -> asyncio.Event | None:
    if stop is None or isinstance(stop, asyncio.Event):
        return stop
    raise ValidationError(
        f"stop must be an asyncio.Event or None, got {type(stop).__name__}", field="stop"
    )


class _WorkerGate:
    """A worker's view of the shared Pacer that also counts the worker's sends and lookups.

    A lookup (GET) during a POST means its outcome was confirmed after an ambiguous
    attempt: the member exists, but whether this run added it needs prior knowledge.

    It also knows whether the worker's job is safe to drop when the run is halted
    (:meth:`Engine.halt`): not inside an attempt, and no attempt of the job may have
    been applied (only a 4xx other than 408, or a 429, proves a change was not).
    """

    __slots__ = ("applied", "engine", "in_attempt", "lookups", "pacer", "sends", "task")

    def __init__(self, pacer: Pacer, engine: Engine | None = None) -> None:
        self.pacer = pacer
        self.engine = engine
        self.sends = 0
        self.lookups = 0
        self.in_attempt = False
        self.applied = False
        self.task: asyncio.Task[Any] | None = None

    @property
    def droppable(self) -> bool:
        return not self.in_attempt and not self.applied

    def try_acquire(self) -> bool:
        if self.engine is not None and self.engine.halted and not self.applied:
            return False  # acquire() says why
        if self.pacer.try_acquire():
            self.in_attempt = True
            return True
        return False

    async def acquire(self, deadline: float) -> None:
        if self.engine is not None and self.engine.halted and not self.applied:
            # Halted: this job has changed nothing yet; another attempt is not started.
            raise asyncio.CancelledError
        await self.pacer.acquire(deadline)
        self.in_attempt = True

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        self.in_attempt = False
        if method == "GET":
            self.lookups += 1
        else:
            self.sends += 1
            if status is None or not (400 <= status < 500 and status != 408):
                self.applied = True
        self.pacer.release(method, status, retry_after)


class SideGate:
    """The gate of a request beside the pool (bulk_import's background read of members).

    It takes no slot from the pool (with ``concurrency=1`` the rows must not wait for a
    long read) and so does not go through the Pacer; it counts its attempts for the
    result and waits out a 429's ``Retry-After`` itself.
    """

    __slots__ = ("_until", "rate_limited", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.rate_limited = 0
        self._until = 0.0

    def try_acquire(self) -> bool:
        return self._until <= asyncio.get_running_loop().time()

    async def acquire(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        wait = self._until - loop.time()
        if wait > 0:
            if loop.time() + wait > deadline:
                raise TimeoutError
            await asyncio.sleep(wait)

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        self.requests += 1
        if status == 429:
            self.rate_limited += 1
            loop = asyncio.get_running_loop()
            self._until = loop.time() + (1.0 if retry_after is None else min(retry_after, 60.0))


class Engine:
    """The state of one run: result, progress, journal, pacer, and the worker pool."""

    def __init__(
        self,
        client: Client,
        instance_id: str,
        *,
        result: BulkResult | SyncResult | RemoveResult,
        concurrency: int,
        max_rate: float | None,
        on_outcome: Callable[[Outcome], None] | None,
        losantdomain: str | None,
        progress: Progress | None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.path = f"/instances/{instance_id}/members"
        self.concurrency = concurrency
        self.max_rate = max_rate
        self.losantdomain = losantdomain
        self.on_outcome = on_outcome
        self.result = result
        self.progress = progress
        self.journal: Journal | None = None
        self.pacer: Pacer | None = None
        self.gates: list[_WorkerGate] = []
        self.side = SideGate()
        self.first_sends = 0
        self.input_error: BaseException | None = None
        #: Set when the run must stop after the requests in flight (on_outcome raised, or
        #: the caller's ``stop`` event was set): see :attr:`stopping`.
        self._stopping: BaseException | None = None
        self.stop_event = stop
        #: The reason a removal's outcome gives (a sync: the member is not in the list).
        self.remove_reason: str | None = "not in the list"
        #: Set once the stop event has halted the run (:meth:`halt`).
        self.halted = False
        self.started = time.perf_counter()
        if progress is not None:
            progress.started = self.started
            progress.finished = False
            progress.ended = None
        #: Set by bulk_import and sync_members: what to do with a row whose POST the server
        #: answered "already a member" (after ``retries``).
        self.on_already: Callable[[Job, _WorkerGate, int], Awaitable[None]] | None = None
        #: Set by bulk_import: settle a POST whose success was confirmed by a lookup after
        #: an ambiguous attempt (sent at loop time ``t``): created, or there before?
        self.on_confirmed: Callable[[Job, _WorkerGate, float, int], Awaitable[None]] | None = None

    # -- stopping -------------------------------------------------------------------------

    @property
    def stopping(self) -> BaseException | None:
        """Why the run is stopping (nothing new is read or sent), or None while it goes on."""
        if self._stopping is None and self.stop_event is not None and self.stop_event.is_set():
            self._stopping = StoppedError(
                "stopped on request: nothing new was read or sent after the stop; the "
                "requests in flight finished and are counted. Run the same call again "
                "(with the same journal) to finish"
            )
        return self._stopping

    @stopping.setter
    def stopping(self, error: BaseException | None) -> None:
        self._stopping = error

    async def until_stopped(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Await ``coro``, unless the ``stop`` event is set first: then cancel it (it must
        be safe to cut: reading, planning, feeding) and return None with :attr:`stopping` set.
        """
        event = self.stop_event
        if event is None:
            return await coro
        if self.stopping is not None:
            coro.close()
            return None
        work = asyncio.ensure_future(coro)
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((work, waiter), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this task is cancelled: no task of ours is left behind.
            for task in (work, waiter):
                if not task.done():
                    task.cancel()
            await asyncio.wait((work, waiter))
        if work.cancelled():
            if not event.is_set():  # cancelled by someone else, not by the stop
                raise asyncio.CancelledError
            return None
        return work.result()

    # -- ending ---------------------------------------------------------------------------

    def finish(self) -> BulkResult | SyncResult | RemoveResult:
        r = self.result
        r.elapsed = time.perf_counter() - self.started
        if self.pacer is not None:
            r.requests = self.pacer.requests + self.side.requests
            r.rate_limited = self.pacer.rate_limited + self.side.rate_limited
            r.retries = max(0, sum(g.sends for g in self.gates) - self.first_sends)
        if self.progress is not None and not self.progress.finished:
            self.progress.finished = True
            self.progress.ended = time.perf_counter()
        return r

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def new_gate(self) -> _WorkerGate:
        assert self.pacer is not None
        gate = _WorkerGate(self.pacer, self)
        self.gates.append(gate)
        return gate

    def halt(self, feeder: asyncio.Task[None], side: asyncio.Task[None] | None) -> None:
        """Stop the run soon, keeping only what may have changed something.

        No more rows are read (the feeder is cancelled); a job that has changed nothing
        (waiting for its turn at the pacer, for a 429's ``Retry-After``, or queued) is
        dropped: not counted, not journaled, so a re-run does it; a job inside an attempt,
        or one an attempt of which may have been applied, finishes and is counted. The
        background read (it changes nothing) is cancelled.
        """
        self.halted = True
        feeder.cancel()
        if side is not None:
            side.cancel()
        for gate in self.gates:
            if gate.droppable and gate.task is not None:
                gate.task.cancel()

    async def _watch_stop(
        self,
        event: asyncio.Event,
        pool: list[asyncio.Task[None]],
        side: asyncio.Task[None] | None,
    ) -> None:
        """Halt the run when ``event`` is set; end when the pool ends first."""
        wait_stop = asyncio.ensure_future(event.wait())
        try:
            while pending := [task for task in pool if not task.done()]:
                await asyncio.wait([*pending, wait_stop], return_when=asyncio.FIRST_COMPLETED)
                if wait_stop.done():
                    self.halt(pool[0], side)
                    return
        finally:
            wait_stop.cancel()

    # -- outcomes -------------------------------------------------------------------------

    def done(
        self,
        index: int,
        member: object,
        kind: str,
        keys: tuple[str, ...] = (),
        reason: str | None = None,
        error: LosantError | None = None,
        category: str | None = None,
        retries: int = 0,
        journal_as: str | None = None,
        role: str | None = None,
    ) -> None:
        """Account for one row (or removal), once: result, progress, journal, callback.

        ``role``: the row's role (a :class:`Role`, a str), journaled with an import's
        outcome (a re-run that asks another role for the member is not "done in an
        earlier run")."""
        r = self.result
        p = self.progress
        r.total += 1
        if kind == "failed":
            assert error is not None
            r.failed += 1
            r._failures.add(ItemFailure(index, member, error))
            if p is not None:
                p.failed += 1
        elif kind == "created":
            if isinstance(r, BulkResult):
                r.created += 1
            else:
                assert isinstance(r, SyncResult)
                r.added += 1
            if p is not None:
                p.created += 1
        elif kind == "skipped":
            assert isinstance(r, BulkResult | RemoveResult)
            r.skipped += 1
            cat = category or reason or "skipped"
            r.skipped_by_reason[cat] = r.skipped_by_reason.get(cat, 0) + 1
            if p is not None:
                p.skipped += 1
        elif kind == "updated":
            assert not isinstance(r, RemoveResult)
            r.updated += 1
            if p is not None:
                p.updated += 1
        elif kind == "removed":
            assert isinstance(r, SyncResult | RemoveResult)
            r.removed += 1
            if p is not None:
                p.removed += 1
        else:
            assert kind == "unchanged" and isinstance(r, SyncResult)
            r.unchanged += 1
            if p is not None:
                p.skipped += 1
        if p is not None:
            p.done += 1
        if self.journal is not None and not r.dry_run:
            self.journal.record(index, keys, journal_as or kind, role)
        if self.on_outcome is not None:
            try:
                self.on_outcome(Outcome(index, member, kind, reason, error, retries))  # type: ignore[arg-type]
            except Exception as exc:
                # The caller's callback failed: stop cleanly. No new row is read or sent;
                # requests in flight finish and are counted (and journaled), so the
                # partial result is the truth; the broken callback is not called again.
                self.on_outcome = None
                exc.add_note(f"raised by on_outcome for row {index}; the run was stopped")
                self.stopping = exc

    def fail_or_stop(
        self, job: Job, exc: LosantError, retries: int, keys: tuple[str, ...] | None = None
    ) -> None:
        if is_fatal(exc):
            raise Stop(exc) from exc
        self.done(
            job[1], job[2], "failed", job[4] if keys is None else keys, error=exc, retries=retries
        )

    # -- the run --------------------------------------------------------------------------

    async def run(
        self,
        feed: Callable[[asyncio.Queue[Job | None]], Coroutine[Any, Any, None]],
        *,
        workers: int,
        background: Callable[[], Coroutine[Any, Any, None]] | None = None,
        keep_background: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``feed`` and up to ``workers`` workers, and ``background`` beside them.

        Workers are started as jobs arrive that no idle worker can take, so a run starts
        no more workers than it has jobs in flight: ``concurrency=100_000_000`` on two
        rows starts two (it started all of them, and ran out of memory). ``background``
        is cancelled when the workers are done, unless ``keep_background()`` is then True.
        """
        if self.stopping is not None:  # stopped before it began: nothing read or sent
            raise Stop(self.stopping)
        if self.pacer is None:
            self.pacer = Pacer(self.concurrency, self.max_rate)
        pool: list[asyncio.Task[None]] = []
        queue = _JobQueue(self.concurrency)
        idle = [0]  # workers waiting for a job
        started = [0]

        def more_workers() -> None:
            # The job about to be put has no idle worker to take it: start one.
            if started[0] < workers and queue.qsize() >= idle[0]:
                started[0] += 1
                pool.append(tg.create_task(self._work(queue, idle)))
                if started[0] == workers:
                    queue.spawn = None  # the pool is complete: no later job can start one

        queue.spawn = more_workers

        async def feeder() -> None:
            try:
                # A stop cuts the feed at once, even while it waits for the input.
                await self.until_stopped(feed(queue))
            except Stop:
                raise
            except Exception as exc:
                # The input failed part-way (e.g. a SourceError at line N): the rows read
                # before it are still finished by the workers, so each one is accounted
                # for (and none is left applied but unreported); then the error is raised.
                self.input_error = exc
            for _ in range(started[0]):
                await queue.put(None)

        try:
            async with asyncio.TaskGroup() as tg:
                side = tg.create_task(background()) if background is not None else None
                pool.append(tg.create_task(feeder()))
                if self.stop_event is not None:
                    tg.create_task(self._watch_stop(self.stop_event, pool, side))
                if side is not None:
                    tg.create_task(_cancel_when_done(pool, side, keep_background))
        # Raised on their own, not in the task group's ExceptionGroup. "from its own
        # cause" keeps the cause each came with (the OSError under a journal write, the
        # aiohttp error under a TransportError) and keeps the group out of the traceback.
        except* Stop as group:
            raise group.exceptions[0] from None
        except* Exception as group:
            first = group.exceptions[0]
            raise first from first.__cause__
        if self.stopping is not None:
            raise Stop(self.stopping)
        if self.input_error is not None:
            # Raised with the partial result, like an on_outcome's error: the rows read
            # before the input failed were sent and finished, and the caller must be able
            # to tell which (a caller's own generator raising is no LosantError).
            raise Stop(self.input_error)

    async def _work(self, queue: asyncio.Queue[Job | None], idle: list[int]) -> None:
        gate = self.new_gate()  # one per worker: counts this worker's sends
        gate.task = asyncio.current_task()
        ops = (self._add, self._patch, self._remove)
        while not self.halted:
            if queue.empty():
                idle[0] += 1
                try:
                    job = await queue.get()
                finally:
                    idle[0] -= 1
            else:
                job = queue.get_nowait()  # what get() does when a job is there: no wait
            if job is None:
                return
            if self.stopping is None and not self.halted:  # stopping: queued jobs dropped
                try:
                    await ops[job[0]](job, gate)
                finally:
                    gate.applied = False  # an idle worker holds nothing: droppable

    async def _add(self, job: Job, gate: _WorkerGate) -> None:
        _, index, item, post, keys, _ = job
        assert post is not None
        self.first_sends += 1
        before, lookups = gate.sends, gate.lookups
        sent_at = asyncio.get_running_loop().time()  # no later than the first attempt
        try:
            await self.client.instance_members.add_raw(
                self.path, post, losantdomain=self.losantdomain, gate=gate
            )
        except BadRequestError as exc:
            if exc.already_member and self.on_already is not None:
                await self.on_already(job, gate, max(0, gate.sends - before - 1))
            else:
                self.fail_or_stop(job, exc, max(0, gate.sends - before - 1))
        except LosantError as exc:
            self.fail_or_stop(job, exc, max(0, gate.sends - before - 1))
        else:
            retries = max(0, gate.sends - before - 1)
            if gate.lookups > lookups and self.on_confirmed is not None:
                await self.on_confirmed(job, gate, sent_at, retries)
            else:
                # A first attempt answered 200, or a resend after an answer that proved
                # nothing was applied: this run added the member. (In a sync the plan's
                # read, complete before any change, showed it absent.)
                self.done(index, item, "created", keys, retries=retries, role=post.role)

    async def member_role(
        self, post: InstanceMemberPost, gate: _WorkerGate
    ) -> tuple[str | None, str | None]:
        """The role and userId of the member ``post`` names, as the server answers a
        lookup (None where it has none). A fatal error stops the run; another is raised."""
        try:
            found = await find_member(
                self.client, self.path, post, losantdomain=self.losantdomain, gate=gate
            )
        except LosantError as exc:
            if is_fatal(exc):
                raise Stop(exc) from exc
            raise
        if not isinstance(found, dict):
            return None, None
        role, user_id = found.get("role"), found.get("userId")
        return (
            role if isinstance(role, str) else None,
            user_id if isinstance(user_id, str) else None,
        )

    async def change_role(
        self,
        job: Job,
        gate: _WorkerGate,
        user_id: str,
        retries: int = 0,
        was: str | None = None,
    ) -> None:
        """PATCH the member to the row's role and account for the row: ``updated`` (from
        ``was`` when known), or failed (or the run stopped) with the PATCH's error.
        ``retries``: those the row took before the PATCH."""
        _, index, item, post, keys, _ = job
        assert post is not None
        path = member_path(self.instance_id, user_id)
        self.first_sends += 1
        before = gate.sends
        try:
            await self.client.instance_member.patch_raw(
                path, post.role.value, losantdomain=self.losantdomain, gate=gate
            )
        except LosantError as exc:
            self.fail_or_stop(job, exc, retries + max(0, gate.sends - before - 1))
            return
        changed = f"from {was} to {post.role.value}" if was else f"to {post.role.value}"
        retries += max(0, gate.sends - before - 1)
        self.done(
            index, item, "updated", keys, f"role changed {changed}", retries=retries, role=post.role
        )

    async def _patch(self, job: Job, gate: _WorkerGate) -> None:
        user_id = job[5]
        assert user_id is not None
        await self.change_role(job, gate, user_id)

    async def _remove(self, job: Job, gate: _WorkerGate) -> None:
        _, index, item, _, keys, user_id = job
        assert user_id is not None
        path = member_path(self.instance_id, user_id)
        self.first_sends += 1
        before = gate.sends
        try:
            # gone_ok: this run read the member as present, so a 404 (e.g. aiohttp's own
            # resend of a DELETE the server had applied) means it is gone: a removal.
            await self.client.instance_member.delete_raw(
                path, losantdomain=self.losantdomain, gate=gate, gone_ok=True
            )
        except LosantError as exc:
            self.fail_or_stop(job, exc, max(0, gate.sends - before - 1))
        else:
            self.done(
                index,
                item,
                "removed",
                keys,
                self.remove_reason,
                retries=max(0, gate.sends - before - 1),
            )

    # -- reading the instance --------------------------------------------------------------

    async def read_members(
        self, table: MemberTable, gate: Any, on_start: Callable[[], None] | None = None
    ) -> None:
        """Stream every current member into ``table`` (one GET, parsed incrementally).

        ``on_start`` is called when the answer begins to arrive (again if it is retried).
        """

        async def consume(items: AsyncIterator[dict[str, Any]]) -> None:
            table.clear()  # a retried read starts again from scratch
            if on_start is not None:
                on_start()
            n = 0
            async for item in items:
                table.add_wire(item)
                table.seen_any = True
                n += 1
                if n % 256 == 0:
                    await asyncio.sleep(0)  # a huge instance never holds the loop long
            table.ready = True

        await scan_members(
            self.client, self.path, consume, losantdomain=self.losantdomain, gate=gate
        )


class _JobQueue(asyncio.Queue["Job | None"]):
    """The engine's bounded job queue: a job about to enter it lets the engine start a
    worker for it when no idle worker can take it (``spawn``); end markers (None) do not.

    ``put`` waits for room, then calls ``put_nowait``: the check runs once per job, when
    it really enters the queue. Once every worker has started, ``spawn`` is None.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize)
        self.spawn: Callable[[], None] | None = None

    def put_nowait(self, item: Job | None) -> None:
        if item is not None and self.spawn is not None:
            self.spawn()
        super().put_nowait(item)


async def _cancel_when_done(
    pool: list[asyncio.Task[None]], side: asyncio.Task[None], keep: Callable[[], bool]
) -> None:
    """Once the pool has finished, cancel the background task (it only saves requests),
    unless ``keep()`` says its outcome still matters: then let it end.

    The pool grows while the feeder runs (workers start on demand), and only the feeder
    starts workers: when every task in it is done, no more will come.
    """
    while pending := [task for task in pool if not task.done()]:
        await asyncio.wait(pending)
    if not keep():
        side.cancel()


async def scan_members(
    client: Client,
    path: str,
    consume: Callable[[AsyncIterator[dict[str, Any]]], Awaitable[None]],
    *,
    losantdomain: str | None,
    gate: Any,
) -> None:
    """``instance_members.scan_raw``: the members streamed to ``consume``."""
    await client.instance_members.scan_raw(path, consume, losantdomain=losantdomain, gate=gate)


async def find_member(
    client: Client,
    path: str,
    post: InstanceMemberPost,
    *,
    losantdomain: str | None,
    gate: Any,
) -> dict[str, Any] | None:
    """``instance_members.find_raw``: the member a row names (by userId when it has one)."""
    return await client.instance_members.find_raw(
        path,
        email=post.email if post.user_id is None else None,
        user_id=post.user_id,
        losantdomain=losantdomain,
        gate=gate,
    )


def _enqueue(queue: asyncio.Queue[Job | None] | None, job: Job) -> Awaitable[None] | None:
    """Put ``job`` on ``queue`` now if there is room (what ``put()`` does then, without
    a coroutine per row); otherwise return the ``put()`` to await."""
    assert queue is not None  # a row that needs a request needs the queue
    if queue.full():
        return queue.put(job)
    queue.put_nowait(job)
    return None


async def read_rows(
    rows: Rows,
    each: Callable[[int, Any], Job | None],
    engine: Engine,
    queue: asyncio.Queue[Job | None] | None = None,
) -> int:
    """Call ``each(index, row)`` for every row, lazily; return how many rows there were.

    ``each`` returns the row's job when it needs a request, which is put on ``queue``
    (waiting for room when it is full), or None; a long run of rows that need no request
    yields to the loop now and then so workers are not starved. Reading ends early once
    the engine is stopping.
    """
    index = 0
    if isinstance(rows, AsyncIterable):
        iterator = aiter(rows)
        try:
            async for item in iterator:
                if engine.stopping is not None:
                    break
                job = each(index, item)
                index += 1
                if job is not None and (wait := _enqueue(queue, job)) is not None:
                    await wait
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
    else:
        for item in rows:
            if engine.stopping is not None:
                break
            job = each(index, item)
            index += 1
            if job is not None:
                if (wait := _enqueue(queue, job)) is not None:
                    await wait
            elif index % 256 == 0:
                await asyncio.sleep(0)
    return index


def new_engine(
    client: Client,
    instance_id: object,
    result: BulkResult | SyncResult | RemoveResult,
    *,
    concurrency: object,
    max_rate: object,
    max_failures_kept: object,
    on_outcome: Callable[[Outcome], None] | None,
    losantdomain: str | None,
    progress: object,
    stop: object,
) -> Engine:
    """Check the settings every operation shares and build its engine around ``result``."""
    kept = check_settings(concurrency, max_rate, max_failures_kept)
    checked_stop = check_stop(stop)
    checked_id = _schema.check_object_id(instance_id, "instanceId")
    _schema.check_header_value(losantdomain, "losantdomain")
    engine = Engine(
        client,
        checked_id,
        result=result,
        concurrency=concurrency,  # type: ignore[arg-type]  # checked above
        max_rate=max_rate,  # type: ignore[arg-type]
        on_outcome=on_outcome,
        losantdomain=losantdomain,
        progress=check_progress(progress),
        stop=checked_stop,
    )
    engine.result._failures.kept = kept
    return engine


async def run_engine(
    engine: Engine,
    body: Callable[[], Awaitable[None]],
    *,
    journal: str | os.PathLike[str] | None,
    mode: str,
    protect: Iterable[str | os.PathLike[str] | None],
) -> None:
    """Open the journal (off the loop: reading a large one is blocking file work), run
    ``body``, and raise any stop with the partial result; the journal is closed and the
    result finished however the run ends."""
    try:
        if journal is not None:
            engine.journal = await asyncio.to_thread(
                Journal, journal, engine.instance_id, mode=mode, protect=protect
            )
        await body()
    except Stop as stopped:
        raise_with_result(stopped.error, engine.finish())
    except LosantError as exc:
        raise_with_result(exc, engine.finish())
    finally:
        engine.close()
        engine.finish()
