"""``bulk_import``: add many members concurrently, losing nothing and duplicating nothing.

Shape: one feeder task reads the input lazily, validates and classifies each row, and
puts only the rows that need a request on a small bounded queue; a fixed pool of
``concurrency`` workers takes rows from it. Memory does not grow with the input: the
queue holds at most ``concurrency`` rows, successes are counted rather than kept, and the
index of rows already seen (to skip duplicates without a request) is a bounded window.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import time
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from .. import _schema
from ..client import Client
from ..errors import BadRequestError, LosantError, ValidationError
from ..models import InstanceMemberPost, MemberLike
from ._journal import Journal
from ._pacing import Pacer
from ._result import ALREADY_MEMBER, DONE_EARLIER, DUPLICATE, BulkResult, ItemFailure, Outcome

__all__ = ["DEDUPE_WINDOW", "bulk_import"]

#: How many recent member keys are remembered to skip duplicates without a request (about
#: 1 MB). A duplicate further back is still never added twice: the server answers "already
#: a member" and the row is skipped with that reason. Bounded so memory stays flat.
DEDUPE_WINDOW = 10_000

_Job = tuple[int, object, InstanceMemberPost, tuple[str, ...]]


class _Stop(Exception):
    """Raised inside the task group to stop every task for a fatal error."""

    def __init__(self, error: LosantError) -> None:
        self.error = error


def _keys(post: InstanceMemberPost) -> tuple[str, ...]:
    if post.user_id is not None and post.email is not None:
        return ("u:" + post.user_id.lower(), "e:" + post.email.lower())
    if post.user_id is not None:
        return ("u:" + post.user_id.lower(),)
    assert post.email is not None
    return ("e:" + post.email.lower(),)


def _check_settings(concurrency: object, max_rate: object) -> None:
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


async def bulk_import(
    client: Client,
    *,
    instanceId: str,
    members: Iterable[MemberLike] | AsyncIterable[MemberLike],
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    losantdomain: str | None = None,
) -> BulkResult:
    """Add every member in ``members`` to the instance; return a :class:`BulkResult`.

    ``members`` is an iterable or async iterable of :class:`InstanceMemberPost`, mappings
    in wire form, or rows with a ``to_member_post()`` method; it is read lazily, never far
    ahead of the work. Each row ends created, skipped (already a member, a duplicate of an
    earlier row, or done in an earlier run per the ``journal``) or failed (kept in
    ``result.failures`` with its index and error; invalid rows fail with
    ``ValidationError`` and are never sent). Retries go through the client's
    :class:`RetryPolicy`; a POST is never applied twice.

    ``concurrency`` bounds requests in flight; ``max_rate`` caps requests per second. On a
    429 every worker pauses together for the ``Retry-After`` and the rate adapts.
    ``on_outcome`` is called with an :class:`Outcome` for each row as it finishes.
    ``journal`` names a JSON Lines file that records outcomes and makes a re-run resume.
    ``dry_run`` validates and plans without sending any POST.

    A fatal error (401, 403, unknown instance, or the client closed under it) stops the
    import at once and is raised, with the partial result on its ``result`` attribute.
    Cancelling the call stops every worker; outcomes recorded so far are in the journal.
    """
    _check_settings(concurrency, max_rate)
    path = f"/instances/{_schema.check_object_id(instanceId, 'instanceId')}/members"
    _schema.check_header_value(losantdomain, "losantdomain")
    run = _Run(client, path, concurrency, max_rate, dry_run, on_outcome, losantdomain)
    if journal is not None:
        run.journal = Journal(journal, instanceId)
    try:
        await run.execute(members)
    except _Stop as stop:
        stop.error.result = run.finish()
        # "from its own cause": keeps the cause it came with, drops the internal _Stop.
        raise stop.error from stop.error.__cause__
    except LosantError as exc:
        exc.result = run.finish()
        raise
    finally:
        run.close()
    return run.finish()


class _Run:
    """The state of one import: counters, failures, the dedupe window, the journal."""

    def __init__(
        self,
        client: Client,
        path: str,
        concurrency: int,
        max_rate: float | None,
        dry_run: bool,
        on_outcome: Callable[[Outcome], None] | None,
        losantdomain: str | None,
    ) -> None:
        self.resource = client.instance_members
        self.path = path
        self.concurrency = concurrency
        self.max_rate = max_rate
        self.losantdomain = losantdomain
        self.on_outcome = on_outcome
        self.result = BulkResult(dry_run=dry_run)
        self.journal: Journal | None = None
        self.existing: set[str] = set()
        # The dedupe window: key -> first row index, evicted oldest first via the deque.
        # (Deleting a dict's first key repeatedly leaves dummy slots that every later
        # next(iter(dict)) scans past: quadratic at a million rows.)
        self.seen: dict[str, int] = {}
        self.seen_order: collections.deque[str] = collections.deque()
        self.pacer: Pacer | None = None
        self.input_error: Exception | None = None
        self.posted_rows = 0
        self.started = time.perf_counter()

    def finish(self) -> BulkResult:
        r = self.result
        r.elapsed = time.perf_counter() - self.started
        if self.pacer is not None:
            r.requests = self.pacer.requests
            r.retries = max(0, self.pacer.posts - self.posted_rows)
            r.rate_limited = self.pacer.rate_limited
        return r

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()

    # -- outcomes -------------------------------------------------------------------------

    def _done(
        self,
        index: int,
        member: object,
        kind: str,
        keys: tuple[str, ...],
        reason: str | None = None,
        error: LosantError | None = None,
        category: str | None = None,
        retries: int = 0,
    ) -> None:
        r = self.result
        r.total += 1
        if kind == "created":
            r.created += 1
        elif kind == "skipped":
            r.skipped += 1
            cat = category or reason or "skipped"
            r.skipped_by_reason[cat] = r.skipped_by_reason.get(cat, 0) + 1
        else:
            assert error is not None
            r.failures.append(ItemFailure(index, member, error))
        if self.journal is not None and not r.dry_run:
            # A duplicate of an earlier row proves nothing: that row may still be in
            # flight, and if the run is killed now a re-run must not skip it as done.
            self.journal.record(index, keys, "duplicate" if category == DUPLICATE else kind)
        if self.on_outcome is not None:
            self.on_outcome(Outcome(index, member, kind, reason, error, retries))  # type: ignore[arg-type]

    # -- the run --------------------------------------------------------------------------

    async def execute(self, members: Iterable[MemberLike] | AsyncIterable[MemberLike]) -> None:
        self.pacer = Pacer(self.concurrency, self.max_rate)
        await self._load_existing()
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=self.concurrency)
        workers = 1 if self.result.dry_run else self.concurrency
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(members, queue, workers))
                for _ in range(workers):
                    tg.create_task(self._work(queue))
        # Raised on their own, not in the task group's ExceptionGroup. "from its own
        # cause" keeps the cause each came with (the OSError under a journal write, the
        # aiohttp error under a TransportError) and keeps the group out of the traceback.
        except* _Stop as group:
            raise group.exceptions[0] from None
        except* LosantError as group:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        except* Exception as group:  # e.g. the caller's iterator failed
            raise group.exceptions[0] from group.exceptions[0].__cause__
        if self.input_error is not None:
            raise self.input_error

    async def _load_existing(self) -> None:
        try:
            data = await self.resource.list_raw(
                self.path, losantdomain=self.losantdomain, gate=self.pacer
            )
        except LosantError as exc:
            if exc.fatal:
                raise _Stop(exc) from exc
            raise
        for item in data:
            email, user_id = item.get("email"), item.get("userId")
            if isinstance(email, str):
                self.existing.add("e:" + email.lower())
            if isinstance(user_id, str):
                self.existing.add("u:" + user_id.lower())

    async def _feed(
        self,
        members: Iterable[MemberLike] | AsyncIterable[MemberLike],
        queue: asyncio.Queue[_Job | None],
        workers: int,
    ) -> None:
        try:
            await self._read(members, queue)
        except Exception as exc:
            # The input failed part-way (e.g. a SourceError at line N): the rows read
            # before it are still finished by the workers, so each one is accounted for
            # (and none is left applied but unreported); then the error is raised.
            self.input_error = exc
        for _ in range(workers):
            await queue.put(None)

    async def _read(
        self,
        members: Iterable[MemberLike] | AsyncIterable[MemberLike],
        queue: asyncio.Queue[_Job | None],
    ) -> None:
        index = 0
        if isinstance(members, AsyncIterable):
            iterator = aiter(members)
            try:
                async for item in iterator:
                    job = self._classify(index, item)
                    index += 1
                    if job is not None:
                        await queue.put(job)
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            for item in members:
                job = self._classify(index, item)
                index += 1
                if job is not None:
                    await queue.put(job)
                elif index % 256 == 0:
                    await asyncio.sleep(0)  # a long run of skipped rows must not starve workers

    def _classify(self, index: int, item: Any) -> _Job | None:
        """Validate and classify one row; return it as a job if it needs a request."""
        try:
            post = InstanceMemberPost.coerce(item)
        except ValidationError as exc:
            self._done(index, item, "failed", (), error=exc)
            return None
        keys = _keys(post)
        journal = self.journal
        for key in keys:
            if journal is not None and key in journal.done:
                self._done(index, item, "skipped", keys, DONE_EARLIER)
                return None
            if key in self.existing:
                self._done(index, item, "skipped", keys, ALREADY_MEMBER)
                return None
            first = self.seen.get(key)
            if first is not None:
                self._done(
                    index, item, "skipped", keys, f"duplicate of row {first}", category=DUPLICATE
                )
                return None
        seen, order = self.seen, self.seen_order
        for key in keys:
            if len(order) >= DEDUPE_WINDOW:
                del seen[order.popleft()]
            seen[key] = index
            order.append(key)
        if self.result.dry_run:
            self._done(index, item, "created", keys, "would be created (dry run)")
            return None
        return (index, item, post, keys)

    async def _work(self, queue: asyncio.Queue[_Job | None]) -> None:
        resource, path, domain = self.resource, self.path, self.losantdomain
        assert self.pacer is not None
        gate = _WorkerGate(self.pacer)  # one per worker: counts this worker's POST attempts
        while (job := await queue.get()) is not None:
            index, item, post, keys = job
            self.posted_rows += 1
            before = gate.posts
            try:
                await resource.add_raw(path, post, losantdomain=domain, gate=gate)
            except BadRequestError as exc:
                retries = max(0, gate.posts - before - 1)
                if exc.already_member:
                    self._done(index, item, "skipped", keys, ALREADY_MEMBER, retries=retries)
                else:
                    self._done(index, item, "failed", keys, error=exc, retries=retries)
            except LosantError as exc:
                if exc.fatal:
                    raise _Stop(exc) from exc
                retries = max(0, gate.posts - before - 1)
                self._done(index, item, "failed", keys, error=exc, retries=retries)
            else:
                self._done(index, item, "created", keys, retries=max(0, gate.posts - before - 1))


class _WorkerGate:
    """A worker's view of the shared Pacer that also counts the worker's POST attempts."""

    __slots__ = ("pacer", "posts")

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.posts = 0

    async def acquire(self, deadline: float) -> None:
        await self.pacer.acquire(deadline)

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        if method == "POST":
            self.posts += 1
        self.pacer.release(method, status, retry_after)
