"""What a bulk import reports: one outcome per row, failures kept, totals."""

from __future__ import annotations

from typing import Literal

import attrs

from ..errors import LosantError

__all__ = ["BulkResult", "ItemFailure", "Outcome", "OutcomeKind"]

OutcomeKind = Literal["created", "skipped", "failed"]

#: Reasons a row is skipped; ``BulkResult.skipped_by_reason`` counts by these.
ALREADY_MEMBER = "already a member"
DUPLICATE = "duplicate in input"
DONE_EARLIER = "done in an earlier run"


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

    ``kind`` is ``created``, ``skipped`` or ``failed``; ``reason`` says why a row was
    skipped (e.g. ``duplicate of row 3``); ``error`` is set for failures; ``retries`` is
    how many times the row's POST was sent again after the first try.
    """

    index: int
    member: object
    kind: OutcomeKind
    reason: str | None = None
    error: LosantError | None = None
    retries: int = 0


@attrs.define(slots=True)
class BulkResult:
    """The result of :func:`bulk_import`: every row seen is counted exactly once.

    ``total == created + skipped + len(failures)``. In a dry run (``dry_run`` True) nothing
    is sent and ``created`` counts the rows that *would* be created. Only failures are kept
    row by row; successes are counted, so the result stays small for any input size.
    """

    total: int = 0
    created: int = 0
    skipped: int = 0
    failures: list[ItemFailure] = attrs.field(factory=list)
    updated: int = 0
    failures_omitted: int = 0
    skipped_by_reason: dict[str, int] = attrs.field(factory=dict)
    dry_run: bool = False
    elapsed: float = 0.0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0

    @property
    def ok(self) -> bool:
        """True when no row failed."""
        return not self.failures

    @property
    def failed(self) -> int:
        """The number of failed rows."""
        return len(self.failures)

    @property
    def rows_per_second(self) -> float:
        """Rows accounted for per second of elapsed time."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def failures_by_type(self) -> dict[str, int]:
        """Failed rows counted by error class name (e.g. ``ValidationError``)."""
        counts: dict[str, int] = {}
        for f in self.failures:
            name = type(f.error).__name__
            counts[name] = counts.get(name, 0) + 1
        return counts

    def to_dict(self) -> dict[str, object]:
        """The figures as a JSON-ready dict: counts, failures by type, time, requests."""
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "failed": self.failed,
            "skipped_by_reason": dict(self.skipped_by_reason),
            "failures_by_type": self.failures_by_type(),
            "dry_run": self.dry_run,
            "elapsed": round(self.elapsed, 3),
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
        }

    def __repr__(self) -> str:
        return (
            f"BulkResult(total={self.total}, created={self.created}, skipped={self.skipped}, "
            f"failed={self.failed}, dry_run={self.dry_run}, elapsed={self.elapsed:.3f}, "
            f"requests={self.requests}, retries={self.retries}, rate_limited={self.rate_limited})"
        )
