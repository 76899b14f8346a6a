"""``remove_members``: remove every member a list names, on the same engine.

One streamed read of the instance's members fills a compact :class:`MemberTable` first:
it is also the check that the token may use the instance (a 401, 403 or unknown instance
stops the run there, before any DELETE), and it resolves email rows to userIds without a
request per row. Then the list is read lazily; each row is matched against the table:
a row naming no current member is skipped (``not a member``), a later row naming a member
an earlier row named is skipped (``duplicate in input``), and the rest are DELETEd by the
engine's workers through the shared pacer. Since every member DELETEd was read as present
in this run, a 404 answering the DELETE (e.g. aiohttp's own resend after a cut) means it
is gone: a removal.

A re-run after an interruption needs no journal to converge: the members already removed
are no longer in the table, so their rows are skipped. With a journal (mode ``remove``)
the rows an earlier run removed are skipped as ``done in an earlier run``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping

import attrs

from ..client import Client
from ..errors import LosantError, ValidationError
from ..models import InstanceMemberPost, MemberLike
from ._digest import MemberTable
from ._engine import (
    REMOVE,
    Engine,
    Job,
    Stop,
    import_key,
    new_engine,
    read_rows,
    run_engine,
)
from ._pacing import Pacer
from ._result import DONE_EARLIER, DUPLICATE, NOT_A_MEMBER, Outcome, Progress, RemoveResult

__all__ = ["removal_identity", "remove_members"]

#: The role put in a row that has none: a removal never sends it.
_ANY_ROLE = "view"
_REMOVED = 1  # table mark: an earlier row of this run named the member


def removal_identity(item: object) -> InstanceMemberPost:
    """The member a row names (its userId and/or email); the row's role is ignored.

    A mapping needs no ``role`` (one it has is not checked); a file row (``SourceRow``)
    needs no role column. An :class:`InstanceMemberPost` is taken as it is. Raises
    :class:`ValidationError` for a row naming no valid email or userId.
    """
    if isinstance(item, InstanceMemberPost):
        return item
    if isinstance(item, Mapping):
        return InstanceMemberPost.coerce({**item, "role": _ANY_ROLE})
    keys = getattr(item, "keys", None)
    if attrs.has(type(item)) and isinstance(keys, Mapping) and hasattr(item, "default_role"):
        # A row read from a file: drop its role column, so any role cell is ignored.
        item = attrs.evolve(
            item,  # type: ignore[misc]
            keys={name: key for name, key in keys.items() if name != "role"},
            default_role=_ANY_ROLE,
        )
    return InstanceMemberPost.coerce(item)  # type: ignore[arg-type]


async def remove_members(
    client: Client,
    *,
    instanceId: str,
    members: Iterable[MemberLike] | AsyncIterable[MemberLike],
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    journal: str | os.PathLike[str] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    progress: Progress | None = None,
    protect: Iterable[str | os.PathLike[str] | None] = (),
    max_failures_kept: int | None = 1000,
    losantdomain: str | None = None,
    stop: asyncio.Event | None = None,
) -> RemoveResult:
    """Remove every member ``members`` names from the instance; return a :class:`RemoveResult`.

    ``members`` takes the row forms of :func:`bulk_import`, but a row needs only its
    ``email`` and/or ``userId``: its ``role`` may be missing and is ignored. A row with a
    userId names that member (as the API resolves rows); a row with only an email names
    the member with that email, in any letter case. Each row ends ``removed``,
    ``skipped`` (reason ``not a member``, ``duplicate in input`` or ``done in an earlier
    run``) or ``failed`` (an invalid row, never sent; or the DELETE failed).

    The instance's members are read once before the list: a 401, 403 or unknown instance
    raises then, with nothing removed; membership is judged from that read. A DELETE is
    resent like any idempotent request; since the member was read as present, a 404 to it
    counts as removed. ``dry_run=True`` reads the members and reports what would be
    removed, removing nobody.

    Concurrency, pacing (``max_rate``, 429 pauses), ``on_outcome``, ``progress``,
    ``max_failures_kept``, the journal (mode ``remove``; ``protect``: paths it must not
    be), fatal errors (raised with ``.result``) and ``stop`` (graceful stop, raising
    :class:`StoppedError` with the partial result) are as in :func:`bulk_import`.
    """
    engine = new_engine(
        client,
        instanceId,
        RemoveResult(dry_run=dry_run),
        concurrency=concurrency,
        max_rate=max_rate,
        max_failures_kept=max_failures_kept,
        on_outcome=on_outcome,
        losantdomain=losantdomain,
        progress=progress,
        stop=stop,
    )
    engine.remove_reason = None

    async def body() -> None:
        await _Remove(engine).execute(members)

    await run_engine(engine, body, journal=journal, mode="remove", protect=protect)
    result = engine.finish()
    assert isinstance(result, RemoveResult)
    return result


class _Remove:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.table = MemberTable()

    async def execute(self, members: Iterable[MemberLike] | AsyncIterable[MemberLike]) -> None:
        engine = self.engine
        engine.pacer = Pacer(engine.concurrency, engine.max_rate)
        # The read changes nothing: a stop cuts it at once.
        await engine.until_stopped(engine.read_members(self.table, engine.new_gate()))
        if engine.stopping is not None:
            raise Stop(engine.stopping)

        async def feed(queue: asyncio.Queue[Job | None]) -> None:
            await read_rows(members, self._classify, engine, queue)

        await engine.run(feed, workers=1 if engine.result.dry_run else engine.concurrency)

    def _classify(self, index: int, item: object) -> Job | None:
        engine = self.engine
        try:
            post = removal_identity(item)
        except ValidationError as exc:
            engine.done(index, item, "failed", (), error=exc)
            return None
        keys = import_key(post)  # the userId when the row has one, as the API resolves it
        journal = engine.journal
        if journal is not None and keys[0] in journal.done:
            engine.done(index, item, "skipped", keys, DONE_EARLIER)
            return None
        table = self.table
        ordinal = table.find(keys[0])
        if ordinal is None:
            engine.done(index, item, "skipped", keys, NOT_A_MEMBER)
            return None
        if table.mark(ordinal) & _REMOVED:
            engine.done(index, item, "skipped", keys, DUPLICATE, journal_as="duplicate")
            return None
        table.set_mark(ordinal, _REMOVED)
        user_id = table.user_id(ordinal)
        if user_id is None:
            error = LosantError(
                f"the member {keys[0][2:]} has no userId in the server's list; it cannot be removed"
            )
            engine.done(index, item, "failed", keys, error=error)
            return None
        if engine.result.dry_run:
            engine.done(index, item, "removed", keys, "would be removed (dry run)")
            return None
        return (REMOVE, index, item, None, keys, user_id)
