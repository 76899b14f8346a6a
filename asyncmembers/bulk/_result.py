"""What the engine reports: one outcome per row, counts, a bounded sample of failures."""

from __future__ import annotations

import time
from typing import Any, Literal

import attrs

from ..errors import LosantError

__all__ = [
    "BulkResult",
    "ItemFailure",
    "Outcome",
    "OutcomeKind",
    "Progress",
    "RemoveResult",
    "StoppedError",
    "SyncResult",
]

OutcomeKind = Literal["created", "updated", "removed", "unchanged", "skipped", "failed"]

#: Reasons a row is skipped; ``BulkResult.skipped_by_reason`` counts by these.
ALREADY_MEMBER = "already a member"
ROLE_UNCHECKED = "already a member (its role was not read: the run was stopping)"
DUPLICATE = "duplicate in input"
DONE_EARLIER = "done in an earlier run"
NOT_A_MEMBER = "not a member"

#: How many failures a result keeps row by row unless told otherwise.
MAX_FAILURES_KEPT = 1000


@attrs.frozen(slots=True)
class ItemFailure:
    """A row that failed: its 0-based input ``index``, the row as given, and the error."""

    index: int
    member: object
    error: LosantError

    def __str__(self) -> str:
        return f"row {self.index}: {type(self.error).__name__}: {self.error}"


@attrs.frozen(slots=True)
class Outcome:
    """What happened to one row, as it happens (passed to ``on_outcome``).

    ``kind`` is ``created``, ``updated`` (role changed), ``skipped``, ``failed``, in a
    sync ``unchanged`` and ``removed`` (``member`` is then the removed member in wire
    form), and in :func:`remove_members` ``removed`` (``member`` is the row as given);
    ``reason`` says why (e.g. ``duplicate of row 3``); ``error`` is set for
    failures; ``retries`` is how many times the row's request was sent again.
    """

    index: int
    member: object
    kind: OutcomeKind
    reason: str | None = None
    error: LosantError | None = None
    retries: int = 0


def _check_kept(value: object) -> int | None:
    from ..errors import ValidationError

    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValidationError(
        f"max_failures_kept must be a whole number of at least 0, or None to keep every "
        f"failure; got {value!r}",
        field="max_failures_kept",
    )


@attrs.define(slots=True)
class _Failures:
    """Failure counts by error type, and the first ``kept`` failures row by row."""

    kept: int | None = MAX_FAILURES_KEPT
    sample: list[ItemFailure] = attrs.field(factory=list)
    omitted: int = 0
    by_type: dict[str, int] = attrs.field(factory=dict)

    def add(self, failure: ItemFailure) -> None:
        name = type(failure.error).__name__
        self.by_type[name] = self.by_type.get(name, 0) + 1
        if self.kept is None or len(self.sample) < self.kept:
            self.sample.append(failure)
        else:
            self.omitted += 1


@attrs.define(slots=True)
class _RunFigures:
    """What every run reports besides its own counts: failures, timing, requests."""

    total: int = 0
    failed: int = 0
    dry_run: bool = False
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    _failures: _Failures = attrs.field(factory=_Failures, alias="_failures", repr=False)

    @property
    def failures(self) -> list[ItemFailure]:
        """The first ``max_failures_kept`` failures, in the order they failed."""
        return self._failures.sample

    @property
    def failures_omitted(self) -> int:
        """Failures beyond the kept sample (counted, not kept)."""
        return self._failures.omitted

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0

    @property
    def rows_per_second(self) -> float:
        """Rows accounted for per second of elapsed time."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def failures_by_type(self) -> dict[str, int]:
        """Every failure (kept or not) counted by error class name."""
        return dict(self._failures.by_type)

    def _counts(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            **self._counts(),
            "failed": self.failed,
            "failures_by_type": self.failures_by_type(),
            "failures_omitted": self.failures_omitted,
            "dry_run": self.dry_run,
            "elapsed": round(self.elapsed, 6),
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
        }

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{k}={v}" for k, v in self._counts().items() if k != "skipped_by_reason"
        )
        return (
            f"{type(self).__name__}({counts}, failed={self.failed}, dry_run={self.dry_run}, "
            f"elapsed={self.elapsed:.3f}, requests={self.requests}, retries={self.retries}, "
            f"rate_limited={self.rate_limited})"
        )


@attrs.define(slots=True, repr=False)
class BulkResult(_RunFigures):
    """The result of :func:`bulk_import`: every row seen is counted exactly once.

    ``total == created + updated + skipped + failed``. ``failures`` is a sample: the first
    ``max_failures_kept`` failures (1000 unless the call said otherwise);
    ``failures_omitted`` says how many more there were, and ``failures_by_type()`` counts
    them all. Every failure, kept or not, went to ``on_outcome`` and the journal as it
    happened. In a dry run nothing is sent and ``created``/``updated`` count what would be.
    """

    created: int = 0
    updated: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = attrs.field(factory=dict)

    def _counts(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.skipped_by_reason),
        }


@attrs.define(slots=True, repr=False)
class SyncResult(_RunFigures):
    """The result of :func:`sync_members`: every desired row and every removal once.

    ``total == added + updated + removed + unchanged + failed``; ``total`` counts the
    desired rows seen plus the members considered for removal. Failures as in
    :class:`BulkResult`: a bounded sample, all of them counted by type.
    """

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0

    def _counts(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
        }


@attrs.define(slots=True, repr=False)
class RemoveResult(_RunFigures):
    """The result of :func:`remove_members`: every listed row counted exactly once.

    ``total == removed + skipped + failed``. A row is skipped when it names no current
    member (``not a member``), a member an earlier row named (``duplicate in input``) or
    one the ``journal`` says an earlier run removed; ``skipped_by_reason`` counts them by
    reason. Failures as in :class:`BulkResult`. In a dry run ``removed`` counts the rows
    that would be removed.
    """

    removed: int = 0
    skipped: int = 0
    skipped_by_reason: dict[str, int] = attrs.field(factory=dict)

    def _counts(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "removed": self.removed,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.skipped_by_reason),
        }


class StoppedError(LosantError):
    """A run stopped on request (its ``stop`` event was set) before it was complete.

    Nothing new was read or sent after the stop; the requests in flight finished and are
    counted in ``.result`` (the partial result) and went to ``on_outcome``. Running the
    same call again (with the same ``journal``, if any) finishes the job. A stop set
    while the last requests were finishing still raises it, with a result that may be
    complete (a re-run then has nothing left to do).
    """


@attrs.define(slots=True)
class Progress:
    """Live progress of a run: pass one as ``progress=`` and read it from another task.

    ``done`` counts rows (and removals) accounted for; ``total`` is what the caller said
    (``Progress(total=N)``) or None; ``rate`` is rows per second; ``eta`` seconds left
    (None without a total); ``finished`` turns True when the run ends, however it ends.
    In a sync, ``created`` counts members added and ``skipped`` the unchanged rows.
    """

    total: int | None = None
    done: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0
    failed: int = 0
    finished: bool = False
    started: float = attrs.field(factory=time.perf_counter)
    ended: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if self.total is None or self.finished:
            return None if self.total is None else 0.0
        rate = self.rate
        left = max(0, self.total - self.done)
        return left / rate if rate > 0 else None
