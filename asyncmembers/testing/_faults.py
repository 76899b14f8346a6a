"""Fault injection for the embedded server: what can go wrong, and when it does.

:class:`Faults` is the configuration. :class:`FaultPlan` turns it into a decision per
request that depends only on the seed and on the request itself (method, path, canonical
body or query, and how many times that same request was seen before), never on the order
in which concurrent requests arrive: a client that sends the same rows against the same
seed meets the same faults on the same rows, however its requests interleave.

:class:`TokenBucket` is the rate limiter. It depends on time by nature, so it is not part
of the reproducible plan; requests it refuses do not advance the plan's counters.
"""

from __future__ import annotations

import enum
import hashlib
import math
from typing import Any, Final

import attrs

__all__ = ["FaultKind", "FaultPlan", "Faults", "TokenBucket"]


class FaultKind(enum.StrEnum):
    """The kinds of injected fault, as counted in ``ServerStats.faults``."""

    ERROR = "error"
    RATE_LIMIT = "rate_limit"
    DROP_BEFORE_COMMIT = "drop_before_commit"
    DROP_AFTER_COMMIT = "drop_after_commit"
    STALL = "stall"


#: The statuses an ``error`` fault answers with, picked evenly.
ERROR_STATUSES: Final = (500, 502, 503, 504)


def _to_float(value: Any) -> float:
    return float(value)


def _finite_non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Faults.{attribute.name} must be a finite number >= 0, got {value!r}")


def _fraction(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(
            f"Faults.{attribute.name} is a fraction of requests and must be in [0, 1], got {value!r}"
        )


def _opt_burst(
    instance: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and (not math.isfinite(value) or value < 1):
        raise ValueError(
            f"Faults.rate_limit_burst must be a number >= 1 (or None for the default), got {value!r}"
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen(kw_only=True)
class Faults:
    """What the embedded server does wrong, and how often. Everything defaults to off.

    ``error_rate``, ``drop_before_commit_rate``, ``drop_after_commit_rate`` and
    ``stall_rate`` are mutually exclusive outcomes of one draw per request, so their sum
    must not exceed 1; each is then exactly the fraction of requests (of those the rate
    limit admits) that meet it. Invalid values raise :class:`ValueError`.

    - ``latency``: seconds added to every request before anything else happens.
    - ``error_rate``: fraction answered 500, 502, 503 or 504 without applying anything.
    - ``rate_limit``: requests per second allowed by a token bucket holding
      ``rate_limit_burst`` tokens (default: one second's worth, at least 1); a request
      beyond it is answered 429 ``TooManyRequests`` with ``Retry-After`` in whole seconds
      (rounded up, at least 1) until a token is free. 0 means no limit.
    - ``drop_before_commit_rate``: fraction whose connection is cut before the request is
      processed; nothing is applied and no answer is sent.
    - ``drop_after_commit_rate``: fraction processed normally (a POST adds the member),
      after which the connection is cut instead of answering: the case that makes a naive
      client add the same member twice.
    - ``stall_rate``: fraction answered only after ``stall_seconds`` (to trip client
      timeouts). A stall ends at once, with the connection cut, when the server closes.
    """

    latency: float = attrs.field(default=0.0, converter=_to_float, validator=_finite_non_negative)
    error_rate: float = attrs.field(default=0.0, converter=_to_float, validator=_fraction)
    rate_limit: float = attrs.field(
        default=0.0, converter=_to_float, validator=_finite_non_negative
    )
    rate_limit_burst: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_opt_burst
    )
    drop_before_commit_rate: float = attrs.field(
        default=0.0, converter=_to_float, validator=_fraction
    )
    drop_after_commit_rate: float = attrs.field(
        default=0.0, converter=_to_float, validator=_fraction
    )
    stall_rate: float = attrs.field(default=0.0, converter=_to_float, validator=_fraction)
    stall_seconds: float = attrs.field(
        default=30.0, converter=_to_float, validator=_finite_non_negative
    )

    def __attrs_post_init__(self) -> None:
        total = (
            self.error_rate
            + self.drop_before_commit_rate
            + self.drop_after_commit_rate
            + self.stall_rate
        )
        if total > 1.0 + 1e-9:
            raise ValueError(
                "Faults.error_rate, drop_before_commit_rate, drop_after_commit_rate and "
                f"stall_rate are exclusive outcomes and must add up to at most 1, got {total:g}"
            )

    @property
    def random(self) -> bool:
        """True when any per-request random fault can fire (so a plan is needed)."""
        return (
            self.error_rate > 0
            or self.drop_before_commit_rate > 0
            or self.drop_after_commit_rate > 0
            or self.stall_rate > 0
        )


@attrs.frozen(slots=True)
class Decision:
    """The fault one request meets: its kind, and the status for an ``error`` fault."""

    kind: FaultKind
    status: int = 0


_TWO_64: Final = float(2**64)


class FaultPlan:
    """Decides, reproducibly, which fault (if any) each request meets.

    The decision for a request is a hash of (seed, method, path, canonical body or query,
    n), where n counts the earlier requests with the same (method, path, body or query).
    Memory grows with the number of distinct requests seen (about 100 bytes each).
    """

    __slots__ = ("_faults", "_seed", "_seen")

    def __init__(self, faults: Faults, seed: int) -> None:
        self._faults = faults
        self._seed = str(seed).encode()
        self._seen: dict[bytes, int] = {}

    def decide(self, method: str, path: str, canonical: bytes) -> Decision | None:
        """The fault for this request, or None; counts the request as seen."""
        h = hashlib.blake2b(self._seed, digest_size=16)
        h.update(b"\0" + method.encode() + b"\0" + path.encode() + b"\0")
        h.update(canonical)
        key = h.digest()
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        draw = hashlib.blake2b(key + n.to_bytes(8, "big"), digest_size=16).digest()
        u = int.from_bytes(draw[:8], "big") / _TWO_64
        f = self._faults
        edge = f.error_rate
        if u < edge:
            pick = int.from_bytes(draw[8:], "big") % len(ERROR_STATUSES)
            return Decision(FaultKind.ERROR, ERROR_STATUSES[pick])
        edge += f.drop_before_commit_rate
        if u < edge:
            return Decision(FaultKind.DROP_BEFORE_COMMIT)
        edge += f.drop_after_commit_rate
        if u < edge:
            return Decision(FaultKind.DROP_AFTER_COMMIT)
        edge += f.stall_rate
        if u < edge:
            return Decision(FaultKind.STALL)
        return None


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate > 0 and burst >= 1")
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if granted, else the seconds until one is free."""
        tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """``wait`` as a ``Retry-After`` value: whole seconds, rounded up, at least 1."""
        return max(1, math.ceil(wait))
