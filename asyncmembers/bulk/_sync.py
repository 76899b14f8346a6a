"""``sync_members``: make an instance's members equal a desired list, on the same engine.

Two phases, so that the removal guard can refuse before anything changes:

1. **Plan.** One streamed read of the current members fills a compact
   :class:`MemberTable` (about 50 bytes a member). The desired list is then read once,
   lazily: each row is matched by userId or email (case-insensitively) and marked in the
   table; an equal row is ``unchanged`` at once, an invalid row ``failed``; rows that need
   a POST (missing) or a PATCH (role differs) go to a temporary spool file on disk, not
   to memory. Members the list did not mark are the removals (``prune=True``).
2. **Guard, then apply.** Too many removals (more than ``max_removals``, or 10 % of the
   current members when it is None) raise :class:`ValidationError` with nothing sent.
   Otherwise the engine's workers apply the spooled changes and the removals.

A re-run after an interruption needs no journal to converge: its plan is made from the
instance as it is then. The journal (mode ``sync``) records every outcome, is locked for
the run and refused for another instance or mode, like an import's.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import tempfile
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import IO, Any

import attrs

from .._schema import EMAIL_RE, OBJECT_ID_RE
from ..client import Client
from ..errors import LosantError, ValidationError
from ..models import InstanceMemberPost, MemberLike
from ._digest import MemberTable, RecentKeys
from ._engine import (
    ADD,
    PATCH,
    REMOVE,
    Engine,
    Job,
    Stop,
    _WorkerGate,
    member_keys,
    new_engine,
    read_rows,
    run_engine,
)
from ._importer import DEDUPE_WINDOW
from ._pacing import Pacer
from ._result import ALREADY_MEMBER, Outcome, Progress, SyncResult

__all__ = ["SyncPlan", "sync_members"]

#: Marks in the member table.
_MATCHED = 1  # a desired row names this member
_PROTECTED = 2  # an invalid row names it: never removed, since the list may want it
#: A second entry of the server's list for a member the table already holds (a listing
#: that repeats members, or one that shifted while it was read): never a removal itself.
_DUPLICATE = 4
#: A member the list may name but the plan cannot tell: listed without an email while
#: rows name members by email alone. Not removed; a failure that says why.
_WITHHELD = 8
#: The marks of the members a prune goes through (removed, or failed as withheld).
_REMOVAL_MARKS = bytes((0, _WITHHELD))

#: With ``max_removals=None``, the share of current members a sync may remove.
DEFAULT_REMOVAL_SHARE = 0.10


#: How many rows of each kind a :class:`SyncPlan` shows.
PLAN_SAMPLE = 5


@attrs.define(slots=True)
class SyncPlan:
    """What a sync is about to do, passed to ``on_plan`` before any change is sent.

    Counts of the changes (``add``, ``update``, ``remove``) and of the rows that need
    none (``unchanged``, ``failed``: invalid rows, and the ``withheld`` members a prune
    would remove but cannot be sure the list leaves out, which fail saying why),
    ``current`` (members read), and ``samples``: the first rows of each kind (``"add"``,
    ``"update"``: the rows as given; ``"remove"``: members in wire form). Raising from
    ``on_plan`` stops the sync with nothing changed; the removal guard is checked after it.
    """

    current: int = 0
    add: int = 0
    update: int = 0
    remove: int = 0
    unchanged: int = 0
    failed: int = 0
    withheld: int = 0
    samples: dict[str, list[Any]] = attrs.field(
        factory=lambda: {"add": [], "update": [], "remove": []}
    )


def _check_max_removals(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValidationError(
        f"max_removals must be a whole number of at least 0, or None for at most 10% of the "
        f"current members; got {value!r}",
        field="max_removals",
    )


async def sync_members(
    client: Client,
    *,
    instanceId: str,
    members: Iterable[MemberLike] | AsyncIterable[MemberLike],
    prune: bool = False,
    max_removals: int | None = None,
    dry_run: bool = False,
    concurrency: int = 16,
    journal: str | os.PathLike[str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    max_rate: float | None = None,
    losantdomain: str | None = None,
    max_failures_kept: int | None = 1000,
    progress: Progress | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
    on_plan: Callable[[SyncPlan], None] | None = None,
    stop: asyncio.Event | None = None,
) -> SyncResult:
    """Make the instance's members match ``members`` (the desired list); return a :class:`SyncResult`.

    ``members`` takes the same row forms as :func:`bulk_import`. A row matches a current
    member by userId or email (case-insensitively): missing members are added (POST), a
    differing role is changed (PATCH), an equal row is ``unchanged``, and with
    ``prune=True`` current members that no row names are removed (DELETE). A later row
    naming a member an earlier row named is a duplicate (``unchanged``, no request). An
    invalid row fails with ``ValidationError``; the member it names, if any, is never
    removed.

    Nothing changes until the whole list has been read: a list that cannot be read to
    the end raises its error with nothing sent, and a prune that would remove more than
    ``max_removals`` members (None: more than 10 % of the current members) raises
    :class:`ValidationError`. ``dry_run=True`` computes the same counts and outcomes
    and changes nothing. ``total == added + updated + removed + unchanged + failed``;
    ``total`` counts the rows seen plus the members considered for removal.

    ``on_plan`` is called with the :class:`SyncPlan` (counts and the first rows of each
    kind) once the list is read, before the removal guard and before any change: a
    command line shows it, and may raise to stop with nothing changed.

    Concurrency, pacing, ``on_outcome``, ``progress``, ``max_failures_kept``, the journal
    (``protect``: paths it must not be) and fatal errors (raised with ``.result``) are
    as in :func:`bulk_import`. ``progress.total`` is set once the plan is known.

    ``stop`` (an :class:`asyncio.Event`) stops the sync gracefully once set, raising
    :class:`StoppedError` with the partial result: set before the plan is complete,
    nothing is changed (a list read in part is never applied, so a prune never removes a
    member an unread row names); set later, the changes in flight finish and are
    counted, and no new change is sent. A re-run makes its plan from the instance as it
    is then, so it finishes the job.
    """
    limit = _check_max_removals(max_removals)
    engine = new_engine(
        client,
        instanceId,
        SyncResult(dry_run=dry_run),
        concurrency=concurrency,
        max_rate=max_rate,
        max_failures_kept=max_failures_kept,
        on_outcome=on_outcome,
        losantdomain=losantdomain,
        progress=progress,
        stop=stop,
    )

    async def body() -> None:
        with tempfile.TemporaryFile(prefix="asyncmembers-sync-") as spool:
            sync = _Sync(engine, spool, prune=bool(prune), limit=limit)
            sync.on_plan = on_plan
            await sync.execute(members)

    await run_engine(engine, body, journal=journal, mode="sync", protect=protect)
    result = engine.finish()
    assert isinstance(result, SyncResult)
    return result


_FORMAT_CHARS = re.compile(r"[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_ANGLE = re.compile(r"<([^<>]*)>")


def _raw_keys(item: object) -> tuple[tuple[str, ...], bool]:
    """The identities an invalid row seems to name (so that prune never removes them),
    and whether it names one clearly: a valid userId or email, read leniently (case,
    surrounding space, invisible format characters, ``Name <address>``). A row that names
    nobody clearly may mean any member."""
    values: dict[str, object] = {}
    if isinstance(item, Mapping):
        values = {"email": item.get("email"), "userId": item.get("userId", item.get("user_id"))}
    else:
        fields, keys = getattr(item, "fields", None), getattr(item, "keys", None)
        if isinstance(fields, Mapping) and isinstance(keys, Mapping):  # a SourceRow
            values = {name: fields.get(keys.get(name, "")) for name in ("email", "userId")}
    out = []
    clear = False
    for name, prefix in (("userId", "u:"), ("email", "e:")):
        value = values.get(name)
        if not isinstance(value, str):
            continue
        value = _FORMAT_CHARS.sub("", value).strip()
        if name == "email" and (inner := _ANGLE.search(value)) is not None:
            value = inner.group(1).strip()
        if value:
            out.append(prefix + value.lower())
            pattern = OBJECT_ID_RE if name == "userId" else EMAIL_RE
            clear = clear or (pattern.fullmatch(value) is not None and _whole(value))
    return tuple(out), clear


def _whole(value: str) -> bool:
    """No character was lost reading it: no undecodable byte (a lone surrogate, as a file
    read in the wrong encoding leaves), no U+FFFD put in its place."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\ufffd" not in value


class _Sync:
    def __init__(self, engine: Engine, spool: IO[bytes], *, prune: bool, limit: int | None) -> None:
        self.engine = engine
        self.spool = spool
        self.prune = prune
        self.limit = limit
        self.table = MemberTable()
        self.current = 0
        #: Distinct members in the server's list (``current`` less its repeated entries).
        self.members = 0
        self.rows = 0
        #: Rows planned as a POST that name their member by email alone.
        self.email_only_adds = 0
        self.withheld = 0
        #: Invalid rows that name no member clearly (so any member may be the one meant).
        self.unclear_rows = 0
        #: The keys of the last DEDUPE_WINDOW planned adds (a repeat is a duplicate).
        self.added = RecentKeys(DEDUPE_WINDOW)
        self.plan = SyncPlan()
        self.on_plan: Callable[[SyncPlan], None] | None = None
        engine.on_already = self._already

    async def execute(self, members: Iterable[MemberLike] | AsyncIterable[MemberLike]) -> None:
        engine = self.engine
        engine.pacer = Pacer(engine.concurrency, engine.max_rate)
        # Reading and planning change nothing: a stop cuts them at once.
        await engine.until_stopped(engine.read_members(self.table, engine.new_gate()))
        if engine.stopping is not None:
            raise Stop(engine.stopping)
        self.current = self.members = len(self.table)
        try:
            rows = await engine.until_stopped(read_rows(members, self._plan, engine))
        except Exception as exc:
            # The desired list failed part-way (a SourceError, the caller's generator):
            # nothing was changed; raised with the partial result like any stop.
            exc.add_note("raised while reading the desired list; nothing was changed")
            raise Stop(exc) from exc
        # A list read only in part is never applied: its unread rows may name members
        # that a prune would otherwise remove.
        if engine.stopping is not None or rows is None:
            raise Stop(engine.stopping or RuntimeError("the list was not read to the end"))
        self.rows = rows
        if self.prune:
            self._settle_removals()
        removals = self.table.count_unmarked(self.current) if self.prune else 0
        plan = self.plan
        plan.current, plan.remove = self.members, removals
        result = engine.result
        assert isinstance(result, SyncResult)
        plan.unchanged, plan.failed = result.unchanged, result.failed + self.withheld
        plan.withheld = self.withheld
        if self.prune:
            plan.samples["remove"] = [
                self.table.wire(o) for o in self.table.unmarked(self.current)
            ][:PLAN_SAMPLE]
        if self.on_plan is not None:
            try:
                self.on_plan(plan)
            except Exception as exc:
                exc.add_note("raised by on_plan; nothing was changed")
                raise Stop(exc) from exc
        self._guard(removals)
        if engine.progress is not None:
            # Every row, and every member considered for removal, ends with one outcome.
            engine.progress.total = self.rows + removals
        if engine.stopping is not None:  # stopped while on_plan ran: nothing is sent
            raise Stop(engine.stopping)
        if engine.result.dry_run:
            for index, ordinal in enumerate(
                self.table.with_marks(_REMOVAL_MARKS, self.current) if self.prune else ()
            ):
                member = self.table.wire(ordinal)
                if self.table.mark(ordinal) == _WITHHELD:
                    error = self._withheld_error()
                    engine.done(self.rows + index, member, "failed", (), error=error)
                    continue
                engine.done(self.rows + index, member, "removed", (), "would be removed (dry run)")
            return
        await engine.run(self._feed, workers=engine.concurrency)

    def _settle_removals(self) -> None:
        """Keep from the removals every member the plan cannot be sure the list leaves out.

        Two holes in the server's list would otherwise cost a member the list names: an
        entry that repeats a member (only its first entry is ever matched by a row, so
        the others looked unnamed), and a member listed without an email while rows name
        members by email alone (the row is planned as a POST, answered "already a
        member", and the member it names was removed by userId). And one in the list: an
        invalid row that names no member clearly (``Bob <bob@...>`` once, an email cell of
        the wrong encoding, a column that was not recognised) may mean any member, so
        nothing is removed (each removal fails as withheld).
        """
        table = self.table
        duplicates = 0
        for ordinal in table.unmarked(self.current):
            if self._repeats(ordinal):
                table.set_mark(ordinal, _DUPLICATE)
                duplicates += 1
        self.members = self.current - duplicates
        if not (self.email_only_adds or self.unclear_rows):
            return
        for ordinal in table.unmarked(self.current):
            if self.unclear_rows or not table.email(ordinal):
                table.set_mark(ordinal, _WITHHELD)
                self.withheld += 1

    def _repeats(self, ordinal: int) -> bool:
        """True when another entry has one of this member's keys and either a row named
        that entry or it came first (it, not this one, is then the member's removal)."""
        table = self.table
        for key in table.keys(ordinal):
            for other in table.owners(key):
                if other != ordinal and (other < ordinal or table.mark(other) != 0):
                    return True
        return False

    async def _already(self, job: Job, gate: _WorkerGate, retries: int) -> None:
        """A planned add answered "already a member" (added since the plan was made): look
        the member up, then leave it (same role) or PATCH it to the row's role, as the
        plan would have had it been there."""
        engine = self.engine
        _, index, item, post, keys, _ = job
        assert post is not None
        try:
            role, user_id = await engine.member_role(post, gate)
        except LosantError as exc:
            error = LosantError(
                f"already a member (added since the plan was made), and its role could not "
                f"be read to compare with {post.role.value}: {exc}"
            )
            engine.done(index, item, "failed", keys, error=error, retries=retries)
            return
        if role is None or role == post.role.value:
            engine.done(index, item, "unchanged", keys, ALREADY_MEMBER, retries=retries)
        elif user_id is None:
            error = LosantError(
                f"already a member with role {role} (added since the plan was made), and the "
                f"server's answer has no userId to change it to {post.role.value} by"
            )
            engine.done(index, item, "failed", keys, error=error, retries=retries)
        else:
            await engine.change_role(job, gate, user_id, retries, was=role)

    def _withheld_error(self) -> LosantError:
        if self.unclear_rows:
            return LosantError(
                f"not removed: {self.unclear_rows:,} invalid row(s) of the list name no "
                f"member clearly (no valid email or userId), and any of them may mean this "
                f"one; fix them (see their errors) and run the sync again"
            )
        return LosantError(
            f"not removed: the server's list shows this member without an email, and "
            f"{self.email_only_adds:,} row(s) of the list name a member by email alone that "
            f"the server's list did not show, so this may be one of them; remove it by "
            f"userId if it is not wanted"
        )

    def _guard(self, removals: int) -> None:
        if self.limit is not None:
            if removals <= self.limit:
                return
            allowed = f"max_removals={self.limit}"
        else:
            if removals <= self.members * DEFAULT_REMOVAL_SHARE:
                return
            allowed = "10% of them (max_removals=None)"
        raise ValidationError(
            f"sync would remove {removals:,} of the instance's {self.members:,} members, more "
            f"than {allowed}; nothing was changed. Check the list, or allow it with "
            f"max_removals={removals} (--max-removals {removals})",
            field="max_removals",
        )

    def _plan(self, index: int, item: object) -> None:
        engine = self.engine
        table = self.table
        try:
            post = InstanceMemberPost.coerce(item)  # type: ignore[arg-type]
        except ValidationError as exc:
            # The list may still mean this member: never remove the one it seems to name;
            # and if it names nobody clearly, it may mean any member: no removals at all.
            raw, clear = _raw_keys(item)
            ordinal = table.find_any(raw)
            if ordinal is not None:
                if not table.mark(ordinal):
                    table.set_mark(ordinal, _PROTECTED)
            elif not clear:
                self.unclear_rows += 1
            engine.done(index, item, "failed", (), error=exc)
            return
        keys = member_keys(post)
        ordinal = table.find_any(keys)
        if ordinal is None:
            if any(key in self.added.first for key in keys):
                engine.done(
                    index, item, "unchanged", keys, "duplicate in input", journal_as="duplicate"
                )
                return
            # Remembered for the last DEDUPE_WINDOW adds only, as an import's rows are: a
            # repeat further apart is POSTed again and _already settles it. (Kept in the
            # member table, they cost ~50 bytes a row: 153 MB for a 2M-row list.)
            self.added.add(keys, index)
            if post.user_id is None:
                self.email_only_adds += 1
            self._change(ADD, index, item, post, keys, None, "would be added (dry run)")
            return
        if table.mark(ordinal) & _MATCHED:
            engine.done(
                index, item, "unchanged", keys, "duplicate in input", journal_as="duplicate"
            )
            return
        table.set_mark(ordinal, _MATCHED)
        role = table.role(ordinal)
        if role == post.role.value:
            engine.done(index, item, "unchanged", keys)
            return
        user_id = table.user_id(ordinal)
        if user_id is None:
            error = LosantError(
                f"the member {keys[0][2:]} has no userId in the server's list; its role cannot be changed"
            )
            engine.done(index, item, "failed", keys, error=error)
            return
        self._change(
            PATCH,
            index,
            item,
            post,
            keys,
            user_id,
            f"role would change from {role} to {post.role.value} (dry run)",
        )

    def _change(
        self,
        op: int,
        index: int,
        item: object,
        post: InstanceMemberPost,
        keys: tuple[str, ...],
        user_id: str | None,
        dry_reason: str,
    ) -> None:
        engine = self.engine
        kind = "add" if op == ADD else "update"
        if op == ADD:
            self.plan.add += 1
        else:
            self.plan.update += 1
        sample = self.plan.samples[kind]
        if len(sample) < PLAN_SAMPLE:
            sample.append(item)
        if engine.result.dry_run:
            engine.done(index, item, "created" if op == ADD else "updated", keys, dry_reason)
            return
        job: Job = (op, index, item, post, keys, user_id)
        try:
            record = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a row object that cannot be pickled: keep its wire form
            record = pickle.dumps((op, index, post.to_wire(), post, keys, user_id))
        self.spool.write(len(record).to_bytes(4, "big") + record)

    async def _feed(self, queue: asyncio.Queue[Job | None]) -> None:
        spool = self.spool
        spool.flush()
        spool.seek(0)
        while self.engine.stopping is None and (head := spool.read(4)):
            job: Job = pickle.loads(spool.read(int.from_bytes(head, "big")))  # our own spool file
            await queue.put(job)
        if not self.prune:
            return
        table = self.table
        for number, ordinal in enumerate(table.with_marks(_REMOVAL_MARKS, self.current)):
            if self.engine.stopping is not None:
                return
            member: dict[str, Any] = table.wire(ordinal)
            user_id = table.user_id(ordinal)
            index = self.rows + number
            keys = (("u:" + user_id,) if user_id else ()) + (
                ("e:" + member["email"],) if "email" in member else ()
            )
            if table.mark(ordinal) == _WITHHELD:
                self.engine.done(index, member, "failed", keys, error=self._withheld_error())
                continue
            if user_id is None:
                error = LosantError(
                    "the member has no userId in the server's list; it cannot be removed"
                )
                self.engine.done(index, member, "failed", keys, error=error)
                continue
            await queue.put((REMOVE, index, member, None, keys, user_id))
