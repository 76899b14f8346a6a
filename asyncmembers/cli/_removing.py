"""``remove FILE``: remove every member a file lists, concurrently, each row accounted for.

The bulk engine has no "remove these members" operation (``sync_members`` removes the
members a list does *not* name), so this is a small loop of its own on the client's
single-member calls: one check that the instance exists and the token may read it, then
``concurrency`` workers take rows from the file. A row naming a userId is DELETEd; a row
naming only an email is looked up first (one filtered GET) to learn its userId. A member
that is not there is *skipped* ("not a member"), so running the same command again after
a stop finishes the job without a journal. Attempts pass through one shared gate that
paces them (``--max-rate``), pauses every worker on a 429 and counts requests, retries and
429s for the summary. A fatal error (401, 403, unknown instance) stops the run and is
raised with the partial :class:`RemoveResult` on ``.result``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from ..bulk import ItemFailure, Progress
from ..client import Client
from ..errors import LosantError, NotFoundError, ProtocolError, ValidationError
from ..models import InstanceMemberPost
from ..resources import member_path, members_path
from ..sources import SourceRow

__all__ = ["NOBODY", "RemoveResult", "identity", "remove_rows"]

#: How many failures the result keeps row by row (all are counted, and all go to the
#: error report as they happen), as the engine does.
MAX_FAILURES_KEPT: Final = 1000
NOT_A_MEMBER: Final = "not a member"
#: An address no user can have (RFC 2606): the preflight GET that checks the instance.
NOBODY: Final = "asyncmembers-instance-check@example.invalid"


@attrs.define(slots=True)
class RemoveResult:
    """The result of ``remove FILE``: every row counted once.

    ``total == removed + skipped + failed``; ``skipped`` rows named no current member
    (or one an earlier row removed). ``failures`` keeps the first 1000; all are counted in
    ``failures_by_type()``.
    """

    total: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    dry_run: bool = False
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: list[ItemFailure] = attrs.field(factory=list)
    failures_omitted: int = 0
    _by_type: dict[str, int] = attrs.field(factory=dict, alias="_by_type")

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def rows_per_second(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def failures_by_type(self) -> dict[str, int]:
        return dict(self._by_type)

    def add_failure(self, failure: ItemFailure) -> None:
        self.failed += 1
        name = type(failure.error).__name__
        self._by_type[name] = self._by_type.get(name, 0) + 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append(failure)
        else:
            self.failures_omitted += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "removed": self.removed,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures_by_type": self.failures_by_type(),
            "failures_omitted": self.failures_omitted,
            "dry_run": self.dry_run,
            "elapsed": round(self.elapsed, 6),
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
        }


class _Pacer:
    """One pace for every worker: at most ``max_rate`` attempts/s, and a shared 429 pause."""

    def __init__(self, max_rate: float | None) -> None:
        self.interval = 1.0 / max_rate if max_rate else 0.0
        self.next_at = 0.0
        self.paused_until = 0.0
        self.requests = 0
        self.rate_limited = 0

    async def acquire(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wait = max(self.paused_until - now, self.next_at - now if self.interval else 0.0)
            if wait <= 0:
                break
            if now + wait > deadline:
                raise TimeoutError
            await asyncio.sleep(wait)
        if self.interval:
            self.next_at = max(now, self.next_at) + self.interval
        self.requests += 1

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        if status == 429:
            self.rate_limited += 1
            pause = 1.0 if retry_after is None else min(retry_after, 60.0)
            self.paused_until = max(self.paused_until, asyncio.get_running_loop().time() + pause)


class _Gate:
    """A worker's view of the pacer that counts its own attempts (retries = extra ones)."""

    def __init__(self, pacer: _Pacer) -> None:
        self.pacer = pacer
        self.sends = 0

    async def acquire(self, deadline: float) -> None:
        await self.pacer.acquire(deadline)
        self.sends += 1

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        self.pacer.release(method, status, retry_after)


def identity(row: object) -> InstanceMemberPost:
    """The member a row names (its email and/or userId); the role is ignored."""
    if isinstance(row, SourceRow):
        keys = {name: key for name, key in row.keys.items() if name != "role"}
        row = attrs.evolve(row, keys=keys, default_role="view")
        return row.to_member_post()
    if isinstance(row, dict):
        return InstanceMemberPost.coerce({**row, "role": "view"})
    return InstanceMemberPost.coerce(row)  # type: ignore[arg-type]


async def remove_rows(
    client: Client,
    rows: Iterable[object],
    *,
    instance_id: str,
    concurrency: int = 16,
    max_rate: float | None = None,
    dry_run: bool = False,
    losantdomain: str | None = None,
    progress: Progress | None = None,
    on_failure: Callable[[object, LosantError], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RemoveResult:
    """Remove the member each row names; return the :class:`RemoveResult`.

    ``should_stop()`` turning True stops reading rows (those taken finish). A fatal error
    is raised with ``.result``. In a dry run a row is looked up, not removed (a userId
    row by ``instance_member.get``, which is counted as one request, unpaced).
    """
    result = RemoveResult(dry_run=dry_run)
    live = progress if progress is not None else Progress()
    pacer = _Pacer(max_rate)
    gates: list[_Gate] = []
    first_sends = 0
    removed_ids: set[str] = set()  # each member is removed (and counted) once
    collection = members_path(instance_id)
    started = time.perf_counter()
    live.started = started

    def done(index: int, row: object, kind: str, error: LosantError | None = None) -> None:
        result.total += 1
        live.done += 1
        if kind == "removed":
            result.removed += 1
            live.removed += 1
        elif kind == "skipped":
            result.skipped += 1
            live.skipped += 1
        else:
            assert error is not None
            result.add_failure(ItemFailure(index, row, error))
            live.failed += 1
            if on_failure is not None:
                on_failure(row, error)

    async def one(index: int, row: object, gate: _Gate) -> None:
        nonlocal first_sends
        try:
            post = identity(row)
        except ValidationError as exc:
            done(index, row, "failed", exc)
            return
        user_id = post.user_id
        try:
            if user_id is None:
                assert post.email is not None
                first_sends += 1
                found = await client.instance_members.find_raw(
                    collection, email=post.email, losantdomain=losantdomain, gate=gate
                )
                if found is None:
                    done(index, row, "skipped")
                    return
                user_id = found.get("userId")
                if not isinstance(user_id, str):
                    raise ProtocolError(
                        f"the server's member {post.email} has no userId; it cannot be removed"
                    )
                looked_up = True
            else:
                looked_up = False
            if user_id in removed_ids:
                done(index, row, "skipped")  # an earlier row named the same member
                return
            removed_ids.add(user_id)
            if dry_run:
                if not looked_up:
                    result.requests += 1
                    await client.instance_member.get(
                        instanceId=instance_id, userId=user_id, losantdomain=losantdomain
                    )
                done(index, row, "removed")
                return
            first_sends += 1
            # gone_ok after a lookup: the member was there a moment ago, so a 404 (e.g.
            # aiohttp's own resend of a DELETE the server had applied) means it is gone.
            await client.instance_member.delete_raw(
                member_path(instance_id, user_id),
                losantdomain=losantdomain,
                gate=gate,
                gone_ok=looked_up,
            )
        except NotFoundError as exc:
            if exc.fatal:
                raise
            done(index, row, "skipped")
        except LosantError as exc:
            if exc.fatal:
                raise
            done(index, row, "failed", exc)
        else:
            done(index, row, "removed")

    async def work(queue: asyncio.Queue[tuple[int, object] | None]) -> None:
        gate = _Gate(pacer)
        gates.append(gate)
        while (item := await queue.get()) is not None:
            await one(*item, gate)

    input_error: list[BaseException] = []

    async def feed(queue: asyncio.Queue[tuple[int, object] | None]) -> None:
        try:
            for index, row in enumerate(rows):
                if should_stop():
                    break
                await queue.put((index, row))
        except Exception as exc:
            # The file failed part-way: the rows taken still finish and are counted, then
            # the error is raised (as the engine does).
            input_error.append(exc)
        finally:
            for _ in range(concurrency):
                await queue.put(None)

    def finish() -> RemoveResult:
        result.elapsed = time.perf_counter() - started
        result.requests += pacer.requests
        result.rate_limited = pacer.rate_limited
        result.retries = max(0, sum(g.sends for g in gates) - first_sends)
        live.finished = True
        live.ended = time.perf_counter()
        return result

    try:
        # The instance exists and the token may read it (a fatal 401/403/404 here stops
        # the run before any change); one filtered GET that matches nobody.
        check = _Gate(pacer)
        gates.append(check)
        first_sends += 1
        await client.instance_members.find_raw(
            collection, email=NOBODY, losantdomain=losantdomain, gate=check
        )
        queue: asyncio.Queue[tuple[int, object] | None] = asyncio.Queue(maxsize=concurrency)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(feed(queue))
            for _ in range(concurrency):
                tg.create_task(work(queue))
    except* LosantError as group:
        error = group.exceptions[0]
        assert isinstance(error, LosantError)
        raise error.with_result(finish()) from None
    if input_error:
        failed = input_error[0]
        if isinstance(failed, LosantError):
            raise failed.with_result(finish())
        raise failed
    return finish()
