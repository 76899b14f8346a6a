"""Figures from paired runs: medians with their spread, n, and what n can resolve.

Every comparison is made pair by pair (A and B run back to back, alternating who goes
first), and the figure is the median of the per-pair ratios. Its spread is shown as the
interquartile range; its resolution is the half-width of a distribution-free 95%
confidence interval of that median (order statistics of the binomial distribution), so
a figure says itself whether its n was enough.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["RESOLVE", "Spread", "median_ci", "spread"]

#: A figure "resolves a 10% difference" when its 95% CI is at most ±5% of the median: a
#: true 10% difference then lies outside the interval around an estimate of no difference.
RESOLVE = 0.05


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free ``level`` confidence interval of the median, or None when n is
    too small for one (n < 6 at 95%)."""
    n = len(xs)
    if n == 0:
        return None
    ys = sorted(xs)
    # The widest k with P(X < k) <= (1 - level) / 2 for X ~ Binomial(n, 1/2):
    # [y_(k), y_(n-k+1)] (1-based) then covers the median with probability >= level.
    tail = 0.0
    k = 0
    while True:
        p_next = math.comb(n, k) / 2**n
        if tail + p_next > (1 - level) / 2:
            break
        tail += p_next
        k += 1
    if k == 0:
        return None
    return ys[k - 1], ys[n - k]


@dataclass(frozen=True)
class Spread:
    """Median, quartiles, extremes, n and the 95% CI of the median of some values."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n: int
    ci: tuple[float, float] | None

    @property
    def half_width(self) -> float | None:
        """The CI's larger half-width relative to the median (0.05 = ±5%)."""
        if self.ci is None or not self.median:
            return None
        return max(self.median - self.ci[0], self.ci[1] - self.median) / abs(self.median)

    @property
    def resolves(self) -> bool:
        hw = self.half_width
        return hw is not None and hw <= RESOLVE

    def text(self, fmt: str = "{:.2f}", unit: str = "") -> str:
        """``1.21× (IQR 1.15–1.39, n=23)``: the value with its spread and n."""
        f = fmt.format
        if self.n == 1:
            return f"{f(self.median)}{unit} (n=1)"
        return f"{f(self.median)}{unit} (IQR {f(self.q1)}–{f(self.q3)}, n={self.n})"

    def resolution(self) -> str:
        hw = self.half_width
        if hw is None:
            return f"n={self.n}: too few pairs for a 95% CI of the median (6 or more needed)"
        verdict = "resolves" if hw <= RESOLVE else "cannot resolve"
        return f"95% CI ±{100 * hw:.1f}%: {verdict} a 10% difference"


def spread(xs: list[float]) -> Spread:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, nan, 0, None)
    if len(xs) == 1:
        return Spread(xs[0], xs[0], xs[0], xs[0], xs[0], 1, None)
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(statistics.median(xs), q1, q3, min(xs), max(xs), len(xs), median_ci(xs))
