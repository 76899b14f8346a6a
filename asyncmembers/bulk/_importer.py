"""``bulk_import``: the add-only use of the engine (plus ``update_roles``).

No idle round trip before the first POST: rows are POSTed at once and the server's
"already a member" answer is the source of truth. Meanwhile one streamed read of the
instance's members fills a compact :class:`MemberTable` in the background; once it is
complete, rows it shows as members are settled without a POST (skipped, or PATCHed with
``update_roles``). The read is cancelled when the rows run out first, so a 1-row import
into a 200k-member instance costs one POST, not the whole list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterable, Callable, Iterable

from ..client import Client
from ..errors import LosantError, ProtocolError, ValidationError
from ..models import InstanceMemberPost, MemberLike
from ._digest import MemberTable, RecentKeys
from ._engine import (
    ADD,
    PATCH,
    Engine,
    Job,
    Stop,
    _WorkerGate,
    import_key,
    is_fatal,
    new_engine,
    read_rows,
    run_engine,
)
from ._journal import ROLE_DIFFERS, UNCHECKED
from ._result import (
    ALREADY_MEMBER,
    DONE_EARLIER,
    DUPLICATE,
    ROLE_UNCHECKED,
    BulkResult,
    Outcome,
    Progress,
)

__all__ = ["DEDUPE_WINDOW", "bulk_import"]

logger = logging.getLogger("asyncmembers")

#: How many recent member keys are remembered to skip duplicates without a request (about
#: 1 MB). A duplicate further back is still never added twice: the server answers "already
#: a member" and the row is skipped with that reason. Bounded so memory stays flat.
DEDUPE_WINDOW = 10_000


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
    update_roles: bool = False,
    max_failures_kept: int | None = 1000,
    progress: Progress | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
    stop: asyncio.Event | None = None,
) -> BulkResult:
    """Add every member in ``members`` to the instance; return a :class:`BulkResult`.

    ``members`` is an iterable or async iterable of :class:`InstanceMemberPost`, mappings
    in wire form, or rows with a ``to_member_post()`` method; it is read lazily, never far
    ahead of the work. Each row ends created, updated (``update_roles``), skipped (already
    a member, a duplicate of an earlier row, or done in an earlier run per the
    ``journal``) or failed (invalid rows fail with ``ValidationError`` and are never
    sent). A row for an existing member whose role differs is PATCHed when
    ``update_roles`` is True, else skipped with the reason ``already a member with role
    view`` (naming the current role). Retries go through the client's
    :class:`RetryPolicy`; a POST is never applied twice.

    ``result.failures`` keeps the first ``max_failures_kept`` failures (None: all);
    every failure goes to ``on_outcome`` and the journal as it happens. ``progress`` (a
    :class:`Progress`) is updated live. ``concurrency`` bounds the rows' requests in
    flight (the one background read of the member list runs beside them);
    ``max_rate`` caps requests per second; on a 429 every worker pauses together.
    ``journal`` names a JSON Lines file that records outcomes and makes a re-run resume;
    it is locked for the run, and refused if it is not a journal of this instance or is
    one of the ``protect`` paths (pass the input file and the error report).
    ``dry_run`` plans without sending any change.

    A fatal error (401, 403, unknown instance, the client closed under it), a failing
    journal or an ``on_outcome`` that raises stops the import at once: the error is
    raised with the partial result on its ``result`` attribute.

    ``stop`` (an :class:`asyncio.Event`) stops the import gracefully once set (e.g. from
    a signal handler): no new row is read or sent, the requests in flight finish, are
    counted, journaled and passed to ``on_outcome``, and :class:`StoppedError` is raised
    with the partial result on ``.result``.
    """
    engine = new_engine(
        client,
        instanceId,
        BulkResult(dry_run=dry_run),
        concurrency=concurrency,
        max_rate=max_rate,
        max_failures_kept=max_failures_kept,
        on_outcome=on_outcome,
        losantdomain=losantdomain,
        progress=progress,
        stop=stop,
    )
    run = _Import(engine, update_roles=bool(update_roles))

    async def body() -> None:
        await run.execute(members)

    await run_engine(engine, body, journal=journal, mode="import", protect=protect)
    result = engine.finish()
    assert isinstance(result, BulkResult)
    return result


class _Import:
    """Classifies rows for the engine and settles rows the server already has."""

    def __init__(self, engine: Engine, *, update_roles: bool) -> None:
        self.engine = engine
        self.update_roles = update_roles
        self.table = MemberTable()
        # The dedupe window: key -> first row index, evicted oldest first via the deque.
        # (Deleting a dict's first key repeatedly leaves dummy slots that every later
        # next(iter(dict)) scans past: quadratic at a million rows.)
        self.seen = RecentKeys(DEDUPE_WINDOW)
        engine.on_already = self._already
        engine.on_confirmed = self._confirmed
        # When the (last) read of the members began to arrive: its snapshot was taken
        # before then, so it is prior knowledge for any row first sent after it.
        self.snapshot_at: float | None = None
        self.read_over = asyncio.Event()

    async def execute(self, members: Iterable[MemberLike] | AsyncIterable[MemberLike]) -> None:
        engine = self.engine
        dry_run = engine.result.dry_run
        from ._pacing import Pacer

        engine.pacer = Pacer(engine.concurrency, engine.max_rate)
        if dry_run:
            # Planning needs the current members before the first row is judged.
            await engine.until_stopped(self._read_members())
            if engine.stopping is not None:
                raise Stop(engine.stopping)

        async def feed(queue: asyncio.Queue[Job | None]) -> None:
            await read_rows(members, self._classify, engine, queue)

        await engine.run(
            feed,
            workers=1 if dry_run else engine.concurrency,
            background=None if dry_run else self._read_members,
            # A read that has not shown a single member yet may still be about to say the
            # server is broken (an answer that is no member list): that is let end, and
            # raised. Once it has shown members it is only saving requests: cancelled.
            # (A stopped run does not wait for it.)
            keep_background=lambda: not self.table.seen_any and engine.stopping is None,
        )

    async def _read_members(self) -> None:
        engine = self.engine

        def started() -> None:
            self.snapshot_at = asyncio.get_running_loop().time()

        try:
            # Beside the pool, not in it: a long read must not hold a worker's slot.
            await engine.read_members(self.table, engine.side, on_start=started)
        except LosantError as exc:
            if is_fatal(exc) or isinstance(exc, ProtocolError):
                # Fatal (an API that cannot be reached included), or an answer that is no
                # member list: a server that breaks the contract cannot settle rows.
                raise Stop(exc) from exc
            # Only an optimisation: the server's answers to the POSTs still decide.
            logger.info("reading the current members failed (%s); going on without", exc)
            self.table.clear()
        finally:
            self.read_over.set()

    def _classify(self, index: int, item: object) -> Job | None:
        """Validate and classify one row; return it as a job if it needs a request."""
        engine = self.engine
        try:
            post = InstanceMemberPost.coerce(item)  # type: ignore[arg-type]
        except ValidationError as exc:
            engine.done(index, item, "failed", (), error=exc)
            return None
        keys = import_key(post)
        journal = engine.journal
        seen = self.seen.first
        for key in keys:
            if journal is not None and journal.has(key, post.role.value):
                engine.done(index, item, "skipped", keys, DONE_EARLIER, role=post.role)
                return None
            first = seen.get(key)
            if first is not None:
                # A duplicate of an earlier row proves nothing: that row may still be in
                # flight, and if the run is killed now a re-run must not skip it as done.
                engine.done(
                    index,
                    item,
                    "skipped",
                    keys,
                    f"duplicate of row {first}",
                    category=DUPLICATE,
                    journal_as="duplicate",
                )
                return None
        self.seen.add(keys, index)
        table = self.table
        if table.ready:
            ordinal = table.find_any(keys)
            if ordinal is not None:
                return self._existing(
                    index, item, post, keys, table.role(ordinal), table.user_id(ordinal)
                )
        if engine.result.dry_run:
            engine.done(index, item, "created", keys, "would be created (dry run)")
            return None
        return (ADD, index, item, post, keys, None)

    def _existing(
        self,
        index: int,
        item: object,
        post: InstanceMemberPost,
        keys: tuple[str, ...],
        role: str,
        user_id: str | None,
    ) -> Job | None:
        """A row for a member the instance has (per the table): skip, or PATCH its role."""
        engine = self.engine
        if role == post.role.value:
            engine.done(index, item, "skipped", keys, ALREADY_MEMBER, role=role)
            return None
        if not self.update_roles or user_id is None:
            reason = f"already a member with role {role}"
            # Not done: a re-run with update_roles must still change the role.
            engine.done(index, item, "skipped", keys, reason, journal_as=ROLE_DIFFERS)
            return None
        if engine.result.dry_run:
            engine.done(
                index,
                item,
                "updated",
                keys,
                f"role would change from {role} to {post.role.value} (dry run)",
            )
            return None
        return (PATCH, index, item, post, keys, user_id)

    async def _confirmed(self, job: Job, gate: _WorkerGate, sent_at: float, retries: int) -> None:
        """The POST's success was confirmed by a lookup after an ambiguous attempt.

        The member exists; whether this run added it or it was there before needs a
        snapshot of the members taken before the row was first sent: the background read,
        when it began to arrive before the row was sent. Absent from the read: this run
        added it. Present in a read older than the row, or present with another role than
        the row's (this run would have added it with the row's): it was there before, and
        is settled like any existing member's row. Present with the row's role in a read
        that may be newer than the row's first attempt: the two cannot be told apart; like
        a single ``post()``, the row counts as created (see docs/RELIABILITY.md).
        """
        engine = self.engine
        _, index, item, post, keys, _ = job
        assert post is not None
        await self.read_over.wait()
        table = self.table
        ordinal = table.find_any(keys) if table.ready else None
        if ordinal is not None:
            role = table.role(ordinal)
            assert self.snapshot_at is not None
            if sent_at > self.snapshot_at or role != post.role.value:
                await self._settle(job, gate, role, table.user_id(ordinal), retries)
                return
        engine.done(index, item, "created", keys, retries=retries, role=post.role)

    async def _settle(
        self, job: Job, gate: _WorkerGate, role: str | None, user_id: str | None, retries: int
    ) -> None:
        """A row for a member that was there before this run: skip it, or PATCH its role."""
        engine = self.engine
        _, index, item, post, keys, _ = job
        assert post is not None
        if role is None or role == post.role.value:
            engine.done(
                index, item, "skipped", keys, ALREADY_MEMBER, retries=retries, role=post.role
            )
            return
        if not self.update_roles or user_id is None:
            engine.done(
                index,
                item,
                "skipped",
                keys,
                f"already a member with role {role}",
                retries=retries,
                journal_as=ROLE_DIFFERS,
            )
            return
        await engine.change_role(job, gate, user_id, retries, was=role)

    async def _already(self, job: Job, gate: _WorkerGate, _retries: int) -> None:
        """The server said "already a member": find its role, then skip or PATCH. (The
        row's outcome counts its PATCH's retries, not its POST's.)"""
        engine = self.engine
        _, index, item, post, keys, _ = job
        assert post is not None
        role: str | None = None
        user_id: str | None = None
        ordinal = self.table.find_any(keys) if self.table.ready else None
        if ordinal is not None:
            role, user_id = self.table.role(ordinal), self.table.user_id(ordinal)
        elif engine.halted:
            # Stopping: no new request is sent, but this row's answer is in: account for
            # it (dropped, it was in no count although its POST had been answered), and
            # journal it as not done, so that a re-run checks the role.
            engine.done(index, item, "skipped", keys, ROLE_UNCHECKED, journal_as=UNCHECKED)
            return
        else:
            # A lookup that fails (not fatally) leaves the role unknown: skipped.
            with contextlib.suppress(LosantError):
                role, user_id = await engine.member_role(post, gate)
        await self._settle(job, gate, role, user_id, 0)
