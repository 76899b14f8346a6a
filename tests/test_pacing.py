"""The bulk importer's pacer: what it learns from 429s, on a clock the test controls."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from asyncmembers.bulk import _pacing
from asyncmembers.bulk._pacing import Pacer
from benchmarks.pacer_sim import VirtualLoop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def _pacer(concurrency: int = 32) -> tuple[Pacer, Clock]:
    clock = Clock()
    pacer = Pacer(concurrency, None)
    pacer._loop = clock  # type: ignore[assignment]
    pacer._interval_start = clock.now
    return pacer, clock


def _answers(pacer: Pacer, clock: Clock, n: int, seconds: float, status: int = 200) -> None:
    """``n`` answers spread evenly over ``seconds``."""
    for _ in range(n):
        clock.now += seconds / n
        pacer._in_flight += 1
        pacer.release("POST", status, None)


async def test_the_rate_is_measured_from_one_429_to_the_next_not_inflated_by_the_refill() -> None:
    # A token bucket of 200/s holding 200: the import drains the full bucket plus the rate
    # in 0.5 s, waits out a 1 s Retry-After, spends the refill (200) in a burst, then runs
    # at the rate until the next 429 at 3.0 s.
    pacer, clock = _pacer()
    _answers(pacer, clock, 300, 0.5)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    assert pacer.rate_limited == 1
    # The first estimate includes the initial bucket: high, and corrected by the next.
    # Nothing confirms it yet: no backoff, and a fast probe above it.
    assert pacer._rate == pytest.approx(600)
    assert pacer._probe == _pacing.UNSURE_PROBE
    assert pacer._credit == 0
    clock.now += 1.0  # the pause
    _answers(pacer, clock, 240, 0.2)  # the refill (200) at once, and 0.2 s of the rate
    _answers(pacer, clock, 260, 1.3)  # then 200/s
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    # 500 answers between the two 429s (2.5 s apart): exactly the server's 200/s. A
    # trailing one-second window would have read 200 + part of the burst: ~350/s.
    assert pacer._rate == pytest.approx(200)
    assert pacer._probe == _pacing.UNSURE_PROBE  # 200 after 600: not confirmed yet
    # The bucket: 300 let through in the first 0.5 s, 100 of them the rate's.
    assert pacer._burst == pytest.approx(200)
    # What the bucket refills during the next 1 s pause goes out first (most of it).
    assert pacer._credit == pytest.approx(_pacing.CREDIT_FRACTION * 200, abs=1)
    assert pacer.concurrency_limit == 16  # grew back to 32 over 500 answers, halved again
    # 429s within the same pause are one episode: the estimate is not redone.
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    assert pacer.rate_limited == 3
    assert pacer._rate == pytest.approx(200)
    # A third measurement that agrees: the limit is known, the rate backs off under it.
    clock.now += 1.0
    _answers(pacer, clock, 500, 1.5)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    assert pacer._rate == pytest.approx(200 * _pacing.BACKOFF_FRACTION)
    assert pacer._probe == _pacing.KNOWN_PROBE


def _in_virtual_time(
    body: Callable[[Pacer, Callable[[], Awaitable[None]]], Awaitable[None]],
) -> list[float]:
    """Run ``body(pacer, attempt)`` on a loop whose clock jumps to the next timer, where
    ``attempt()`` waits for a rate slot; return the times the slots came."""
    loop = VirtualLoop()
    times: list[float] = []

    async def main() -> None:
        pacer = Pacer(32, None)

        async def attempt() -> None:
            await pacer._rate_slot()
            times.append(asyncio.get_running_loop().time())

        await body(pacer, attempt)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return times


def test_rate_slots_are_one_over_the_rate_apart_and_start_after_the_pause() -> None:
    async def body(pacer: Pacer, attempt: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        pacer._set_rate(1000.0)
        await asyncio.gather(*(attempt() for _ in range(4)))
        # After a 429 the first slot is the end of the pause: nothing is sent during it.
        pacer._in_flight += 1
        pacer.release("POST", 429, 2.0)
        assert pacer._pause_until == pytest.approx(loop.time() + 2.0)
        await attempt()

    times = _in_virtual_time(body)
    assert [t - times[0] for t in times[1:4]] == pytest.approx([0.001, 0.002, 0.003])
    assert times[4] - times[3] == pytest.approx(2.0, abs=0.001)


def test_a_rate_raised_while_attempts_queue_applies_to_them_at_once() -> None:
    """Slots reserved on arrival kept their reservation's rate: eight attempts queued at
    1/s went one a second for eight seconds after the rate had grown to 8/s."""

    async def body(pacer: Pacer, attempt: Callable[[], Awaitable[None]]) -> None:
        pacer._set_rate(1.0)
        queued = [asyncio.ensure_future(attempt()) for _ in range(9)]
        await asyncio.sleep(0.5)  # the first went at once; eight queue a second apart
        pacer._set_rate(8.0)
        await asyncio.gather(*queued)

    times = _in_virtual_time(body)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The first queued one goes when the rate changes (its 1/8 s had passed), the rest
    # 1/8 s apart: done 1.375 s in, where the old slots ran to 8 s.
    assert gaps == pytest.approx([0.5] + [0.125] * 7)


async def test_try_acquire_takes_a_free_turn_at_once_and_refuses_what_must_wait() -> None:
    """The synchronous fast path gives exactly the turns acquire() would give at once."""
    pacer, clock = _pacer(concurrency=2)
    assert pacer.try_acquire() and pacer.try_acquire()
    assert pacer.requests == 2
    assert not pacer.try_acquire()  # both slots in flight: acquire() must wait
    pacer.release("POST", 200, None)
    assert pacer.try_acquire()  # the freed slot
    pacer.release("POST", 429, 1.0)  # a shared pause starts; the limit halves to 1
    pacer.release("POST", 200, None)
    assert pacer.requests == 3
    assert not pacer.try_acquire()  # paused, and a rate is now in force
    clock.now += 2.0
    assert not pacer.try_acquire()  # the adaptive rate paces every later attempt
    assert pacer.requests == 3 and pacer._in_flight == 0


def _measured_at_200() -> tuple[Pacer, Clock]:
    """A pacer that has measured a 200/s limit twice in a row (after a first, high
    estimate that includes the server's initial bucket), paused."""
    pacer, clock = _pacer()
    _answers(pacer, clock, 300, 0.5)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    for _ in range(2):
        clock.now += 1.0
        # 200/s over the 2.5 s between two 429s: the pause's refill, then the rate
        _answers(pacer, clock, 200, 0.01)
        _answers(pacer, clock, 300, 1.49)
        pacer._in_flight += 1
        pacer.release("POST", 429, 1.0)
    return pacer, clock


def _growth_steps(pacer: Pacer, clock: Clock, seconds: int) -> list[float]:
    """The rate after each of ``seconds`` growth steps, one a second from the pause's end."""
    clock.now = pacer._pause_until
    rates = []
    for _ in range(seconds):  # one growth step a second, as the waiting workers call it
        clock.now += 1.0
        assert pacer._rate is not None
        pacer._grow(clock.now)
        rates.append(pacer._rate)
    return rates


async def test_the_rate_grows_back_to_the_known_limit_then_probes_above_it_slowly() -> None:
    pacer, clock = _measured_at_200()
    limit = pacer._ceiling
    assert limit is not None
    assert limit == pytest.approx(200, rel=0.01)
    assert pacer._probe == _pacing.KNOWN_PROBE
    rates = _growth_steps(pacer, clock, 60)
    # Back to the measured limit at 1% a second (97% -> 100% in three steps), no further.
    assert rates[2] == pytest.approx(limit * _pacing.BACKOFF_FRACTION * 1.01**3)
    assert rates[3] == pytest.approx(limit)
    # Then probing: 0.1% a second at first, doubling every 5 s. Nine seconds past the
    # limit the rate is under 2% over it (growing 1% a second it would be 9.4% over, and
    # the server's bucket would have emptied within those nine seconds).
    assert limit < rates[12] < limit * 1.02
    steps = [b / a - 1 for a, b in itertools.pairwise(rates[3:])]
    assert steps[0] == pytest.approx(0.001 * 2 ** (1 / 5))
    assert steps[10] == pytest.approx(2 * steps[5])  # doubles every 5 s
    # A limit that rose is still found: 35 s past it, the rate grows 12.8% a second.
    assert steps[34] == pytest.approx(0.001 * 2**7)


async def test_an_unconfirmed_limit_is_probed_fast() -> None:
    """A measured limit that the next 429 does not confirm may be far too low (a bucket
    smaller than a pause's refill, a 429 that was not the limit's): the rate starts at it
    and doubles every second (TCP's slow start; growing 1% a second, then 2%, 4%, ..., it
    took seven seconds to double)."""
    pacer, clock = _pacer()
    _answers(pacer, clock, 300, 0.5)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    clock.now += 1.0
    _answers(pacer, clock, 60, 0.5)  # 40/s over the 1.5 s since the first 429
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    assert pacer._ceiling == pytest.approx(40)
    assert pacer._probe == _pacing.UNSURE_PROBE
    rates = _growth_steps(pacer, clock, 5)
    assert rates[:2] == pytest.approx([80, 160])
    # Then it bisects up to the rate in force at the 429 (600: see below).
    assert rates[2] == pytest.approx((160 * 600) ** 0.5)


def _second_429(
    pacer: Pacer,
    clock: Clock,
    answers: int,
    *,
    waited: int,
    rate: float,
    first: tuple[int, float] = (300, 0.5),
) -> None:
    """A first 429 after ``first`` (answers, seconds: by default a 200/s limit and its
    200-request bucket), then ``answers`` over the 1 s pause and 0.1 s after it,
    ``waited`` of 40 attempts having waited for their turn, at ``rate``, and a second 429."""
    _answers(pacer, clock, *first)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    pacer._set_rate(rate)
    pacer.requests += 40
    pacer._waited += waited
    clock.now += 1.0
    _answers(pacer, clock, answers, 0.1)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)


async def test_after_a_429_the_probe_bisects_up_to_the_rate_that_ran_into_it() -> None:
    """Doubling from 160/s ran into a 429 at 320/s (a 1-request bucket refuses at once):
    the limit lies between, so the probe halves the distance (in ratio) each second
    instead of doubling to 320 again; within 1% of it without a 429, it doubles again."""
    pacer, clock = _pacer()
    _second_429(pacer, clock, 176, waited=10, rate=320)  # 176 in 1.1 s: 160/s
    assert pacer._probe == _pacing.UNSURE_PROBE
    assert pacer._rate == pytest.approx(160)
    rates = _growth_steps(pacer, clock, 12)
    assert rates[:3] == pytest.approx([160 * 2 ** (1 - 2**-k) for k in (1, 2, 3)])
    assert all(r < 320 for r in rates[:7])
    assert rates[-1] > 320  # no 429 at ~320: no longer a bound


async def test_a_clean_second_measurement_is_the_limit_at_once() -> None:
    """The import started fast and was held back by the pacer, and the bucket (its size
    from the first interval) held the pause's refill: the measurement is exact, known at
    once, without backoff (the benchmark's import paid a third pause ~6.5 s in to
    confirm it)."""
    pacer, clock = _pacer()
    _second_429(pacer, clock, 220, waited=40, rate=600)  # 220 in 1.1 s: 200/s
    assert pacer._probe == _pacing.KNOWN_PROBE
    assert pacer._rate == pytest.approx(200)


@pytest.mark.parametrize(
    ("first", "answers", "waited", "rate", "why"),
    [
        # 300/s with a 30-request bucket: 33 answers in the first 0.01 s, then the 30 the
        # pause refilled and 0.1 s of the rate (54.5/s over the 1.1 s): the bucket's size
        # (~30) is under what a 54.5/s limit would have refilled in the pause (54.5).
        ((33, 0.01), 60, 40, 3300, "a bucket smaller than the pause's refill"),
        ((300, 0.5), 220, 40, 250, "the rate in force under 1.5x the measurement: no push"),
        ((300, 0.5), 220, 10, 600, "most attempts did not wait: the input set the pace"),
    ],
)
async def test_a_measurement_that_may_be_low_is_not_taken_as_the_limit(
    first: tuple[int, float], answers: int, waited: int, rate: float, why: str
) -> None:
    pacer, clock = _pacer()
    _second_429(pacer, clock, answers, waited=waited, rate=rate, first=first)
    assert pacer._probe == _pacing.UNSURE_PROBE, why


async def test_a_429_during_the_probe_measures_the_limit_again() -> None:
    pacer, clock = _measured_at_200()
    # The server's limit rose to 250/s (bucket 250): its refill at the end of the pause,
    # then 250/s for 10 s.
    clock.now = pacer._pause_until
    _answers(pacer, clock, 250, 0.01)
    _answers(pacer, clock, 2500, 10.0)
    pacer._in_flight += 1
    pacer.release("POST", 429, 1.0)
    # 250 after 200: not confirmed, so no backoff under it and a fast probe above it.
    assert pacer._ceiling == pytest.approx(250, rel=0.02)
    assert pacer._rate == pytest.approx(pacer._ceiling)
    assert pacer._probe == _pacing.UNSURE_PROBE


async def test_a_retry_after_of_0_still_pauses_briefly() -> None:
    """``Retry-After: 0`` made every 429 an episode of its own, each halving the rate."""
    pacer, clock = _pacer()
    pacer._in_flight += 2
    pacer.release("POST", 429, 0.0)
    assert pacer._pause_until == pytest.approx(clock.now + _pacing.MIN_PAUSE)
    rate = pacer._rate
    clock.now += 0.01
    pacer.release("POST", 429, 0.0)  # the next one in flight: the same episode
    assert pacer._rate == rate and pacer.rate_limited == 2
