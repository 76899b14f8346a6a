"""Retry policy: explicit data that says what is retried, how often and for how long."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import attrs

from .errors import ValidationError

__all__ = ["RetryPolicy", "parse_retry_after"]


def _positive(name: str, *, allow_zero: bool = False) -> attrs._ValidatorType[float]:
    def check(_: object, __: attrs.Attribute[float], value: float) -> None:
        ok = value >= 0 if allow_zero else value > 0
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not ok
            or math.isnan(value)
        ):
            need = "zero or more" if allow_zero else "greater than zero"
            raise ValidationError(
                f"RetryPolicy.{name} must be a number {need}, got {value!r}", field=name
            )

    return check


def _attempts(_: object, __: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValidationError(
            f"RetryPolicy.attempts counts every try including the first and must be at least 1, "
            f"got {value!r} (use attempts=1 to disable retries)",
            field="attempts",
        )


@attrs.frozen(slots=True)
class RetryPolicy:
    """How a failed call is retried.

    Bounded twice: by ``attempts`` (tries in all, the first included) and by ``timeout``
    (seconds for all tries and the waits between them together; a wait that would end past
    it is not started). Between tries the wait grows exponentially from ``wait_initial`` up
    to ``wait_max``, with full jitter, unless the server sent ``Retry-After``: that is
    honoured up to ``max_retry_after`` seconds, and a longer one is not waited out (the call
    fails with :class:`~asyncmembers.errors.RateLimitError` carrying ``retry_after``). A
    ``Retry-After`` of 0 (or a date already past) gets the backoff, as urllib3 does.

    Connection failures, timeouts and the statuses in ``retry_statuses`` are retried. A POST
    is resent freely only when the server provably did not apply it (connection refused,
    429: see ``LosantError.may_have_been_applied``); after any 5xx, a cut or a timeout the
    client first asks the server whether the member now exists. ``RetryPolicy(attempts=1)`` disables retries.
    """

    attempts: int = attrs.field(default=5, validator=_attempts)
    timeout: float = attrs.field(default=120.0, validator=_positive("timeout"))
    wait_initial: float = attrs.field(
        default=0.25, validator=_positive("wait_initial", allow_zero=True)
    )
    wait_max: float = attrs.field(default=15.0, validator=_positive("wait_max", allow_zero=True))
    max_retry_after: float = attrs.field(
        default=60.0, validator=_positive("max_retry_after", allow_zero=True)
    )
    jitter: bool = True
    retry_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 500, 502, 503, 504}), converter=frozenset
    )

    def backoff(self, retry_number: int, rand: float) -> float:
        """The wait before retry ``retry_number`` (1 for the first retry); ``rand`` in [0, 1)."""
        ceiling = min(self.wait_max, math.ldexp(self.wait_initial, retry_number - 1))
        return ceiling * rand if self.jitter else ceiling


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
