"""Pacing for the bulk importer: shared 429 pauses, an adaptive rate and concurrency.

One :class:`Pacer` is shared by every worker of an import and sits in front of every HTTP
attempt (it implements the session's ``AttemptGate``):

* **Shared pause.** A 429 pauses *all* workers until its ``Retry-After`` has passed,
  instead of each worker waiting on its own and the others running into the limit.
* **Adaptive rate.** On the first 429 of a pause, the rate is set just under the rate the
  server let requests through since the previous such 429 (see :meth:`Pacer._on_rate_limited`
  for why that interval, and how a bucket smaller than a pause's refill is told apart);
  while no 429 comes it grows back to that measured limit, then probes above it, faster
  the longer no 429 comes (the plateau and probe of TCP CUBIC): slowly (from 0.1% a
  second) once the limit is known (two measurements agree, or one is clean), doubling
  every second (TCP's slow start) while the last one may be far too low. A rate-limited
  server is driven close to its limit with few 429s. After a pause, the requests the
  server's bucket refilled meanwhile go out first, without waiting for the rate; the
  others take new slots, handed out in order at the rate in force.
* **Adaptive concurrency** (AIMD): the number of attempts in flight is halved on a 429
  pause and grows by about one for each window of successes, up to ``concurrency``.
* An optional fixed ``max_rate`` (requests/s) from the caller, with aiolimiter.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

__all__ = ["Pacer"]

#: Pause when a 429 carries no Retry-After.
DEFAULT_PAUSE = 1.0
#: Longest pause a single 429 can impose on the whole import.
MAX_PAUSE = 60.0
#: Shortest pause a 429 imposes (a Retry-After of 0, or a date already past): every 429
#: then began an episode of its own, measured over milliseconds with nothing let through,
#: and the halved rate fell to ~1 request a second against a 200/s limit.
MIN_PAUSE = 0.1
#: Before the first answer the rate halved by a 429 that let nothing through is this,
#: or the concurrency if higher.
FIRST_RATE = 16.0
#: Fraction of the measured limit to run at after a 429.
BACKOFF_FRACTION = 0.97
#: Growth of the adaptive rate per second without a 429, up to the last measured limit.
GROWTH_PER_SECOND = 1.01
#: Above the last measured limit the rate probes for a higher one, in steps a second
#: apart: its growth per second starts at ``first`` and doubles every ``doubling`` seconds
#: without a 429, up to ``most``. Once two measurements in a row agree (within AGREE), or
#: one is clean (see _on_rate_limited), the limit is known: the probe is slow (growing 1%
#: a second past it, the rate ran into the limit again ~10 s after each pause, and every
#: 429 stops all workers for a whole Retry-After). Until then the measurement may be far
#: too low (a bucket smaller than a pause's refill, a 429 that was not the limit's, an
#: input slower than the limit, a limit that rose, a first 429 that let nothing through):
#: the rate doubles every second, as TCP's slow start does every round trip. (Doubling
#: every half second, or in quarter-second steps, overshot buckets smaller than a
#: pause's refill so often that they settled at 25-50% of the limit: pacer_sim.)


class Probe(NamedTuple):
    first: float
    doubling: float
    most: float


KNOWN_PROBE = Probe(first=0.001, doubling=5.0, most=2.0)
UNSURE_PROBE = Probe(first=1.0, doubling=math.inf, most=2.0)
#: A known limit that the slow probe has run past for this long without a 429 (by ~25%:
#: on a steady limit the next 429 comes ~15 s after a pause) while the import pushed
#: against it is stale: the limit rose (it had dropped while another client shared it,
#: say). The rate is unsure again and doubles every second. (300/s that dropped to 30/s
#: for 3 s: 37% of the limit 30-60 s in.)
STALE_AFTER = 25.0
AGREE = 0.05
#: While unsure, the rate the server let through just before a 429 (answers per window of
#: at least WINDOW seconds and WINDOW_ANSWERS answers, from SETTLE seconds after the last
#: pause, ending within 2 * WINDOW of the 429) also bounds the limit from below.
WINDOW = 0.25
WINDOW_ANSWERS = 10
SETTLE = 0.5
#: Shortest interval a rate is measured over (a 429 in the first milliseconds).
MIN_INTERVAL = 0.05
#: Share of the server's estimated refill during a pause that is sent at once after it.
CREDIT_FRACTION = 0.8


def _limiter(rate: float) -> AsyncLimiter:
    # Imported here: only a caller's max_rate needs it, and every command-line run would
    # otherwise pay its import (~14 ms, a few µs a row of a typical import's CPU).
    from aiolimiter import AsyncLimiter

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
        # The adaptive rate, paced by slots 1/rate apart. (aiolimiter's rate is fixed per
        # limiter: replacing one at each change gave every new limiter an empty bucket, a
        # burst, and left earlier waiters pacing at the old rate alongside, ~10 requests/s
        # over the rate set, enough to drain the server's bucket within seconds.)
        self._rate: float | None = None
        self._next_slot = 0.0
        self._last_slot = 0.0
        self._slot_queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._slot_timer: asyncio.TimerHandle | None = None
        self._last_growth = 0.0
        # The server's limit as last estimated (None before the first 429), the probe
        # above it (KNOWN_PROBE or UNSURE_PROBE) and since when, and the last measurement
        # from one 429 to the next (two that agree make the limit known).
        self._ceiling: float | None = None
        self._probe = UNSURE_PROBE
        self._probe_from = 0.0
        self._measured: float | None = None
        # Once a rate is in force: answers let through per window (see WINDOW).
        self._window_start = 0.0
        self._window_count = 0
        self._window: tuple[float, float] | None = None  # (end, answers/s)
        # Answers the server let through (anything but a 429) since _interval_start: a
        # counter, where a deque of success times cost a clock read and an append per row.
        self._let_through = 0
        self._interval_start = self._loop.time()
        # (answers let through, seconds) up to the first 429, and the server's burst (its
        # bucket's size) estimated from it once the rate is known; see _on_rate_limited.
        self._first_interval: tuple[int, float] | None = None
        self._burst: float | None = None
        # Whether the interval since _interval_start began with no 429 (a full bucket).
        self._bucket_in_interval = False
        # When the last pause ended (the requests since are the rate's, and the refill's).
        self._active_from = 0.0
        # Attempts since the last 429, and how many of them waited for their turn.
        self._requests_from = 0
        self._waited = 0
        # While unsure: the rate in force at the last 429 (the probe bisects up to it).
        self._refused_at: float | None = None
        # Attempts that may skip the adaptive rate: the server's refill during a pause.
        self._credit = 0
        self.requests = 0
        self.posts = 0
        self.rate_limited = 0

    @property
    def concurrency_limit(self) -> int:
        """How many attempts may be in flight now."""
        return max(1, int(self._limit))

    def try_acquire(self) -> bool:
        """Take this attempt's turn if nothing needs waiting for (the common case, with no
        timer, future or coroutine); False: :meth:`acquire` must be awaited."""
        # in_flight < max(1, int(limit)) for a limit >= 1, without the conversions.
        if (
            self._in_flight + 1 <= self._limit
            and self._rate is None
            and self._fixed is None
            and self._pause_until <= self._loop.time()
        ):
            self._in_flight += 1
            self.requests += 1
            return True
        return False

    async def acquire(self, deadline: float) -> None:
        """Wait for this attempt's turn; TimeoutError if it does not come by ``deadline``."""
        if self.try_acquire():
            return
        async with asyncio.timeout_at(deadline):
            await self._wait_for_turn()

    def _take_slot(self) -> None:
        self._in_flight += 1
        self.requests += 1

    async def _wait_for_turn(self) -> None:
        loop = self._loop
        start = loop.time()
        if self._rate is not None:
            self._grow(start)
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
            while True:
                if self._rate is not None:
                    if self._credit > 0:
                        self._credit -= 1
                    else:
                        await self._rate_slot()
                # A 429 may have started a pause while this attempt queued for the rate:
                # it waits that out too, instead of running into the limit it just heard
                # about, and then takes a new slot: every attempt that queued would
                # otherwise go at the end of the pause at once, a wave the server's
                # bucket may not hold.
                wait = self._pause_until - loop.time()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if loop.time() > start:
                self._waited += 1
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
        elif status is not None:
            self._let_through += 1
            if self._rate is not None:
                self._count_answer()
            if status < 500 and self._limit < self._max and self._adaptive:
                self._limit = min(float(self._max), self._limit + 1.0 / self._limit)
        self._wake()

    def _wake(self) -> None:
        if not self._waiters:
            return
        free = self.concurrency_limit - self._in_flight
        while free > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                free -= 1

    async def _rate_slot(self) -> None:
        """Wait for this attempt's slot: slots are 1/rate apart, handed out in order, each
        at the rate in force when it is handed out. (Slots reserved on arrival kept the
        rate of their reservation: 16 attempts queued at 1/s still went one a second for
        16 s after the rate had grown to 8/s.)"""
        assert self._rate is not None
        loop = self._loop
        if not self._slot_queue:
            now = loop.time()
            if self._next_slot <= now:
                self._last_slot = now
                self._next_slot = now + 1.0 / self._rate
                return
        fut: asyncio.Future[None] = loop.create_future()
        self._slot_queue.append(fut)
        if self._slot_timer is None:
            self._slot_timer = loop.call_at(self._next_slot, self._hand_out_slots)
        await fut

    def _hand_out_slots(self) -> None:
        """The slot timer: the next queued attempts whose slots have come go."""
        self._slot_timer = None
        assert self._rate is not None
        now = self._loop.time()
        queue = self._slot_queue
        while queue and self._next_slot <= now:
            fut = queue.popleft()
            if fut.done():
                continue  # cancelled while queued: its slot goes to the next
            fut.set_result(None)
            # From the slot's own time, so that a late timer does not slow the rate.
            self._last_slot = self._next_slot
            self._next_slot += 1.0 / self._rate
        if queue:
            self._slot_timer = self._loop.call_at(self._next_slot, self._hand_out_slots)

    def _reschedule_slots(self, at: float) -> None:
        """The next slot is at ``at`` (a new rate, or the end of a pause)."""
        self._next_slot = at
        if self._slot_timer is not None:
            self._slot_timer.cancel()
            self._slot_timer = self._loop.call_at(at, self._hand_out_slots)

    def _count_answer(self) -> None:
        now = self._loop.time()
        if now < self._window_start:
            return  # the end of a pause: the bucket's refill, not a rate
        if now - self._window_start >= WINDOW and self._window_count >= WINDOW_ANSWERS:
            self._window = (now, self._window_count / (now - self._window_start))
            self._window_start, self._window_count = now, 0
        self._window_count += 1

    def _grow(self, now: float) -> None:
        """Raise the adaptive rate for each second without a 429: by GROWTH_PER_SECOND up
        to the estimated limit, then by the probe (KNOWN_PROBE or UNSURE_PROBE)."""
        assert self._rate is not None
        probe = self._probe
        if now - self._last_growth < 1.0 or now <= self._pause_until:
            return
        self._last_growth = now
        rate, ceiling = self._rate, self._ceiling
        if ceiling is not None and rate < ceiling:
            rate *= GROWTH_PER_SECOND
            if rate >= ceiling:
                rate, self._probe_from = ceiling, now
        else:
            if (
                probe is KNOWN_PROBE
                and now - self._probe_from >= STALE_AFTER
                and self._waited >= 0.5 * (self.requests - self._requests_from) > 0
            ):
                self._estimate_again(now)
                probe = self._probe
            doublings = min(32.0, (now - self._probe_from) / probe.doubling)
            grown = rate * (1.0 + min(probe.most - 1.0, probe.first * 2.0**doublings))
            hi = self._refused_at
            if probe is UNSURE_PROBE and hi is not None:
                # Below the rate that ran into the last 429: halve the distance to it (in
                # ratio) each second, rather than double past it again at once (a bucket of
                # one request at 300/s: the 429 came as the rate doubled from 160 to 320/s,
                # and the next measurement was 160/s again, and agreed). Held within 1% of
                # it without a 429, it bounds nothing.
                if rate < 0.99 * hi:
                    grown = min(grown, math.sqrt(rate * hi))
                else:
                    self._refused_at = None
            rate = grown
        self._set_rate(rate)

    def _estimate_again(self, now: float) -> None:
        """Measure the limit afresh from ``now``, probing fast from the rate in force.

        Measured from the last 429, long before, the next 429 would average the old limit
        into the new (300/s that was 30/s for 3 s: the next 429, 25 s later, measured
        64/s, clean, and the rate held there). From now, it includes whatever the bucket
        held, as the import's first measurement does: it is not trusted to confirm the
        next. The bucket's size estimated at the start stands (the server's setting).
        """
        self._probe, self._probe_from, self._refused_at = UNSURE_PROBE, now, None
        self._measured, self._bucket_in_interval = None, True
        self._let_through, self._interval_start = 0, now
        self._waited, self._requests_from = 0, self.requests

    def _on_rate_limited(self, retry_after: float | None) -> None:
        self.rate_limited += 1
        now = self._loop.time()
        pause = (
            DEFAULT_PAUSE if retry_after is None else min(max(retry_after, MIN_PAUSE), MAX_PAUSE)
        )
        new_episode = now >= self._pause_until
        self._pause_until = max(self._pause_until, now + pause)
        if not (new_episode and self._adaptive):
            return
        # The server's limit, measured from one such 429 to the next. A token bucket is
        # empty at both, so what it let through in between is exactly its rate times the
        # interval: a refill during a pause, spent in a burst after it, does not inflate
        # the estimate (a trailing one-second window of successes read ~255/s for a
        # 200/s limit, so every episode ended with the next). Before the first 429 the
        # bucket started full, so the first estimate is high; the next one is exact if the
        # bucket held the pause's whole refill and the import kept up with the limit, and
        # too low otherwise (see KNOWN_PROBE).
        interval = max(now - self._interval_start, MIN_INTERVAL)
        measured = self._let_through / interval
        backoff = BACKOFF_FRACTION
        if self._first_interval is not None and self._burst is None and measured > 0:
            # Up to the first 429 the server let through its whole bucket plus its rate
            # times the interval; with the rate now measured, the rest is the bucket's
            # size (an underestimate if the import ran slower than the limit for a while).
            let_through, seconds = self._first_interval
            self._burst = max(0.0, let_through - measured * seconds)
        # Exact at once when the bucket held the pause's refill (it let through the
        # refill plus the rate, not a smaller bucket plus the rate: the bucket's size is at
        # least what the measurement says the pause refilled) and the import pushed
        # against the limit: it offered well over what came through (the rate in force at
        # least 1.5x the measurement), and most attempts waited for their turn (the pacer,
        # not the input, set the pace). The second 429 of an import that started fast is.
        rate_then = self._rate
        paused = self._active_from - self._interval_start
        clean = (
            not self._bucket_in_interval
            and self._burst is not None
            and self._burst >= 0.97 * measured * paused
            and (rate_then is None or rate_then >= 1.5 * measured)
            and self.requests > self._requests_from
            and self._waited >= 0.5 * (self.requests - self._requests_from)
        )
        # A bucket clearly smaller than the pause's refill (30 requests at 300/s, refilled
        # in 0.1 s of a 1 s pause) held only its size: the answers since the pause's end
        # less the bucket's estimated size are the rate's. (Two measurements of the first
        # kind agreed at 57% of such a limit, and the pacer held it as known.) Bounded by what
        # the last window let through, or, after a short run with no window, by half the
        # rate that ran into the 429: the bucket's size may be underestimated, and the
        # fewer the answers since the pause, the more one answer more or less weighs.
        active = now - self._active_from
        window = self._window
        recent = window[1] if window is not None and now - window[0] <= 2 * WINDOW else None
        if (
            not clean
            and self._burst is not None
            and self._burst < 0.9 * measured * paused
            and active > MIN_INTERVAL
        ):
            bound = recent
            if bound is None and active < SETTLE and rate_then is not None:
                bound = rate_then / 2
            if bound is not None:
                bucket_aware = (self._let_through - self._burst) / active
                measured = max(measured, min(bound, bucket_aware))
        if measured > 0:
            # The first measurement includes the bucket the server started with: too high
            # (or, from a 429 within milliseconds, meaningless) to confirm the next.
            previous = self._measured
            trusted = self._first_interval is not None and not self._bucket_in_interval
            self._measured = measured if trusted else None
            if clean:
                self._probe, backoff = KNOWN_PROBE, 1.0
            elif previous is not None and abs(measured - previous) <= AGREE * previous:
                self._probe = KNOWN_PROBE
            else:
                self._refused_at = rate_then
                # Maybe far too low: the probe above it is fast, and the rate let through
                # just before this 429 bounds it too, unless the bucket holds more than
                # that window's worth: a window taken while a large bucket drained read
                # twice the limit, and the probe doubled from it again and again.
                self._probe, backoff = UNSURE_PROBE, 1.0
                if recent is not None and (self._burst is None or self._burst < WINDOW * recent):
                    measured = max(measured, recent)
            self._ceiling = measured
        nothing_through = measured <= 0
        if nothing_through:
            # No answer let through at all since the last 429: halve whatever rate was in
            # force. Before the first answer none is: start from half the concurrency, or
            # 8/s if more (a 429 to the first POST, whose bucket's one token the read of
            # existing members took: at concurrency 1, half of it, 0.5/s, left the import
            # crawling at a row a second).
            measured, backoff = (rate_then or max(float(self._max), FIRST_RATE)) / 2, 1.0
        if self._first_interval is None:
            self._first_interval = (self._let_through, interval)
        self._bucket_in_interval = False
        self._let_through = 0
        self._waited, self._requests_from = 0, self.requests
        self._interval_start = now
        self._set_rate(measured * backoff)
        self._reschedule_slots(self._pause_until)
        # The bucket refills while everyone waits: sending that refill at once after the
        # pause (and only then the measured rate) is what keeps a pause from costing a
        # pause's worth of requests.
        self._credit = 0
        if self._burst is not None and not nothing_through:
            self._credit = int(CREDIT_FRACTION * min(self._burst, measured * pause))
        self._last_growth = self._probe_from = self._active_from = self._pause_until
        self._window_start, self._window_count = self._pause_until + SETTLE, 0
        self._window = None
        self._limit = max(1.0, self._limit / 2)

    def _set_rate(self, rate: float) -> None:
        rate = max(1.0, rate)
        if self._max_rate is not None:
            rate = min(rate, self._max_rate)
        old, self._rate = self._rate, rate
        if old is not None and rate != old:
            # The next slot is one new interval after the last, not one old one.
            self._reschedule_slots(max(self._last_slot + 1.0 / rate, self._loop.time()))
