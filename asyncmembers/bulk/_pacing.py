"""Pacing for the bulk importer: shared 429 pauses, an adaptive rate and concurrency.

One :class:`Pacer` is shared by every worker of an import and sits in front of every HTTP
attempt (it implements the session's ``AttemptGate``):

* **Shared pause.** A 429 pauses *all* workers until its ``Retry-After`` has passed,
  instead of each worker waiting on its own and the others running into the limit.
* **Adaptive rate.** On the first 429 of a pause, the rate is set just under the rate of
  successful requests in the last second (what the server actually let through); while
  no 429 comes it grows by 2% a second, so a rate-limited server is driven close to its
  limit with few 429s. Implemented with aiolimiter.
* **Adaptive concurrency** (AIMD): the number of attempts in flight is halved on a 429
  pause and grows by about one for each window of successes, up to ``concurrency``.
* An optional fixed ``max_rate`` (requests/s) from the caller, also with aiolimiter.
"""

from __future__ import annotations

import asyncio
import collections

from aiolimiter import AsyncLimiter

__all__ = ["Pacer"]

#: Pause when a 429 carries no Retry-After.
DEFAULT_PAUSE = 1.0
#: Longest pause a single 429 can impose on the whole import.
MAX_PAUSE = 60.0
#: Fraction of the measured goodput to run at after a 429.
BACKOFF_FRACTION = 0.95
#: Growth of the adaptive rate per second without a 429.
GROWTH_PER_SECOND = 1.02
#: Window over which successful requests are counted to estimate the server's limit.
WINDOW = 1.0


def _limiter(rate: float) -> AsyncLimiter:
    # A short period keeps bursts small (rate/20 at once) while averaging to `rate`.
    # The capacity must hold one whole request: rate * (1 / rate) can round to
    # 0.9999999999999999 (rate 1.9, 3.7, ...), and aiolimiter then refuses every acquire.
    capacity = max(1.0, rate * max(0.05, 1.0 / rate))
    return AsyncLimiter(capacity, capacity / rate)


class Pacer:
    """Gate in front of every HTTP attempt of one bulk import."""

    def __init__(self, concurrency: int, max_rate: float | None, adaptive: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._max = concurrency
        self._limit = float(concurrency)
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pause_until = 0.0
        self._adaptive = adaptive
        self._fixed = _limiter(max_rate) if max_rate else None
        self._max_rate = max_rate
        self._rate: float | None = None
        self._rate_limiter: AsyncLimiter | None = None
        self._last_growth = 0.0
        self._ok_times: collections.deque[float] = collections.deque()
        self._started = self._loop.time()
        self.requests = 0
        self.posts = 0
        self.rate_limited = 0

    @property
    def concurrency_limit(self) -> int:
        """How many attempts may be in flight now."""
        return max(1, int(self._limit))

    async def acquire(self, deadline: float) -> None:
        """Wait for this attempt's turn; TimeoutError if it does not come by ``deadline``."""
        if (
            self._in_flight < self.concurrency_limit
            and self._rate_limiter is None
            and self._fixed is None
            and self._pause_until <= self._loop.time()
        ):
            # Nothing to wait for: the common case, kept free of timers and futures.
            self._take_slot()
            return
        async with asyncio.timeout_at(deadline):
            await self._wait_for_turn()

    def _take_slot(self) -> None:
        self._in_flight += 1
        self.requests += 1

    async def _wait_for_turn(self) -> None:
        loop = self._loop
        while True:
            wait = self._pause_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self._in_flight < self.concurrency_limit:
                break
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if not fut.cancelled() and fut.done():
                    self._wake()  # pass on a wake-up this cancelled waiter received
                raise
        self._take_slot()
        try:
            if self._fixed is not None:
                await self._fixed.acquire()
            if self._rate_limiter is not None:
                await self._rate_limiter.acquire()
            # A 429 may have started a pause while this attempt queued for the rate: it
            # waits that out too, instead of running into the limit it just heard about.
            wait = self._pause_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:
            self._in_flight -= 1
            self.requests -= 1
            self._wake()
            raise

    def release(self, method: str, status: int | None, retry_after: float | None) -> None:
        self._in_flight -= 1
        if method == "POST":
            self.posts += 1
        if status == 429:
            self._on_rate_limited(retry_after)
        elif status is not None and status < 500 and self._adaptive:
            self._on_success()
        self._wake()

    def _wake(self) -> None:
        free = self.concurrency_limit - self._in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    def _on_success(self) -> None:
        now = self._loop.time()
        ok = self._ok_times
        ok.append(now)
        while ok[0] < now - WINDOW:
            ok.popleft()
        if self._limit < self._max:
            self._limit = min(float(self._max), self._limit + 1.0 / self._limit)
        if self._rate is not None and now - self._last_growth >= 1.0 and now > self._pause_until:
            self._last_growth = now
            self._set_rate(self._rate * GROWTH_PER_SECOND)

    def _on_rate_limited(self, retry_after: float | None) -> None:
        self.rate_limited += 1
        now = self._loop.time()
        pause = DEFAULT_PAUSE if retry_after is None else min(retry_after, MAX_PAUSE)
        new_episode = now >= self._pause_until
        self._pause_until = max(self._pause_until, now + pause)
        if not (new_episode and self._adaptive):
            return
        ok = self._ok_times
        while ok and ok[0] < now - WINDOW:
            ok.popleft()
        # Successes per second over the window, or over the run so far if it is shorter
        # (a 429 in the first 40 ms must not read as "the server allows 40 requests/s").
        observed = min(WINDOW, max(now - self._started, 0.05))
        goodput = len(ok) / observed
        # What the server let through in the last second is the best guess of its limit.
        rate = goodput * BACKOFF_FRACTION if goodput > 0 else (self._rate or float(self._max)) / 2
        if self._rate is not None:
            rate = min(rate, self._rate * BACKOFF_FRACTION)
        self._set_rate(rate)
        self._last_growth = self._pause_until
        self._limit = max(1.0, self._limit / 2)

    def _set_rate(self, rate: float) -> None:
        rate = max(1.0, rate)
        if self._max_rate is not None:
            rate = min(rate, self._max_rate)
        self._rate = rate
        self._rate_limiter = _limiter(rate)
