"""Fault soak: every fault of the embedded server at once, and the import still tells the truth.

Each run imports a few thousand rows (emails and userIds, letter-case and whitespace
duplicates, invalid rows, a few users who are members already) against a server that
answers 5xx, rate-limits with 429, cuts connections before and after committing, adds
latency and stalls past the client's per-attempt timeout, all at once. Afterwards:

- the instance's members are exactly the valid rows (and the earlier members), once each;
- every row is accounted for once: ``total == created + skipped + len(failures)``;
- no false failure: a row reported failed is not in fact a member;
- no duplicate application: ``server.stats.posts_applied`` is the number of distinct
  valid rows that were not members already.

CI runs a short version (a few seeds of ~1500 rows, high and low concurrency: seconds).
The long soak is opt-in::

    ASYNCMEMBERS_SOAK_SEEDS=50 pytest tests/test_reliability_soak.py     # 50 seeds
    pytest -m slow tests/test_reliability_soak.py                        # 50 seeds, default

``ASYNCMEMBERS_SOAK_ROWS`` (default 4000) sets the rows per seed of the long soak.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer, FaultKind, Faults
from tests._shared import identities

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "soak-secret-token"

#: Per-attempt timeout of the client: far above a healthy answer on a busy machine,
#: far below a stall, so every stall trips it.
ATTEMPT_TIMEOUT = 0.4
STALL_SECONDS = 1.0

EVERYTHING = Faults(
    latency=0.001,
    error_rate=0.05,
    rate_limit=800.0,  # trips in the bursts of high concurrency on a fast, idle machine
    rate_limit_burst=400.0,
    drop_before_commit_rate=0.03,
    drop_after_commit_rate=0.03,
    stall_rate=0.01,
    stall_seconds=STALL_SECONDS,
)

PATIENT = am.RetryPolicy(attempts=10, wait_initial=0.005, wait_max=0.1, timeout=60.0)


# -- the input ------------------------------------------------------------------------------


@attrs.define
class Plan:
    """Rows to import and what the server must hold afterwards."""

    rows: list[Any]
    invalid: set[int]
    expected: set[str]  # member identities: "e:<lower email>" or "u:<lower userId>"
    preexisting: set[str]


def _hex_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(24))


def _mixed_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


INVALID_ROWS: list[Any] = [
    {"email": "broken@", "role": "view"},
    {"email": "no-at-sign.example.com", "role": "admin"},
    {"email": "x@example.com", "role": "owner"},
    {"email": "x@example.com"},
    {"role": "view"},
    {"userId": "123", "role": "view"},
    {"userId": "g" * 24, "role": "view"},
    {"email": "x@example.com", "role": "view", "name": "extra field"},
    {"email": "a" * 1020 + "@b.co", "role": "view"},
    {"email": "", "userId": "", "role": "view"},
    {"email": 42, "role": "view"},
    {"email": ["x@example.com"], "role": "view"},
    {"email": "two@@example.com", "role": "view"},
    {"email": "sp ace@example.com", "role": "view"},
    "not a mapping",
    None,
]


def make_plan(seed: int, n: int, server: FakeLosantServer) -> Plan:
    """About ``n`` rows: valid ones, duplicates of them, invalid ones, earlier members."""
    rng = random.Random(seed)
    rows: list[Any] = []
    invalid: set[int] = set()
    expected: set[str] = set()
    earlier: list[tuple[str, dict[str, str]]] = []  # (identity, a row that names it)
    preexisting: set[str] = set()
    for i in range(12):  # users who are members before the import
        email = f"old{i}-{seed}@example.org"
        server.add_member(IID, email=email, role="view")
        preexisting.add("e:" + email.lower())
        rows.append({"email": f" {_mixed_case(rng, email)} ", "role": "admin"})
    while len(rows) < n:
        r = rng.random()
        if r < 0.08 and earlier:  # a duplicate of an earlier row, cased and padded
            _, row = rng.choice(earlier)
            dup = {k: f"  {_mixed_case(rng, v)}\t" for k, v in row.items()}
            rows.append(dup)
        elif r < 0.14:
            invalid.add(len(rows))
            rows.append(rng.choice(INVALID_ROWS))
        elif r < 0.30:
            user_id = _hex_id(rng)
            row = {"userId": _mixed_case(rng, user_id), "role": rng.choice(["admin", "view"])}
            rows.append(row)
            earlier.append(("u:" + user_id, row))
            expected.add("u:" + user_id)
        else:
            local = f"u{len(rows)}.{rng.randrange(10**6)}"
            email = f"{local}@{rng.choice(['example.com', 'Example.ORG', 'ünïcode.example'])}"
            row = {"email": email, "role": rng.choice(["admin", "view", " View ", "ADMIN"])}
            rows.append(row)
            earlier.append(("e:" + email.lower(), row))
            expected.add("e:" + email.lower())
    return Plan(rows, invalid, expected | preexisting, preexisting)


def identity(member: dict[str, Any]) -> str:
    email = member.get("email")
    return "e:" + email.lower() if email else "u:" + str(member["userId"]).lower()


def row_identities(row: Any) -> set[str]:
    """What a valid row names (empty for an invalid one)."""
    try:
        post = am.InstanceMemberPost.coerce(row)
    except am.ValidationError:
        return set()
    return identities(post)


# -- the checks -----------------------------------------------------------------------------


async def settle(server: FakeLosantServer) -> None:
    """Let stalled requests the client gave up on finish, so the server's truth is final."""
    await asyncio.sleep(STALL_SECONDS + 0.3)


def check_truth(
    plan: Plan,
    result: am.BulkResult,
    server: FakeLosantServer,
    *,
    complete: bool,
    admits_doubt: bool = False,
) -> None:
    members = [identity(m) for m in server.members(IID)]
    held = set(members)
    assert len(members) == len(held), "a user is a member twice"

    # Every row accounted for, once.
    assert result.total == len(plan.rows)
    assert result.total == result.created + result.skipped + len(result.failures)
    failed = [f.index for f in result.failures]
    assert len(failed) == len(set(failed)), "a row was reported failed twice"

    # Invalid rows fail with a ValidationError, valid rows never do.
    validation = {f.index for f in result.failures if isinstance(f.error, am.ValidationError)}
    assert validation == plan.invalid

    # No false failure: a row reported failed is not in fact a member. When the client
    # had to give up without being able to find out (the lookup failed too), the error
    # must say so, and that is the only excuse.
    false = [
        (f.index, f.member, repr(f.error))
        for f in result.failures
        if row_identities(f.member) & held
        and not (admits_doubt and "may have been applied" in f.error.message)
    ]
    assert not false, f"rows reported failed that are members: {false[:5]}"

    # Nothing the input did not ask for; exactly the input when no row failed.
    assert held <= plan.expected, sorted(held - plan.expected)[:5]
    if complete:
        assert held == plan.expected, sorted(plan.expected - held)[:5]
        assert {f.index for f in result.failures} == plan.invalid

    # No duplicate application, and "created" is the truth about this run.
    new = held - plan.preexisting
    assert server.stats.posts_applied == len(new)
    doubtful = sum(1 for f in result.failures if row_identities(f.member) & held)
    assert result.created + doubtful == len(new)


@attrs.define
class Soak:
    """One soak run: its result, the server, and how long the import took (seconds)."""

    result: am.BulkResult
    server: FakeLosantServer
    seconds: float


async def soak_once(
    seed: int,
    n: int,
    concurrency: int,
    *,
    faults: Faults = EVERYTHING,
    retry: am.RetryPolicy = PATIENT,
    complete: bool = True,
    admits_doubt: bool = False,
) -> Soak:
    async with FakeLosantServer(
        tokens={TOKEN: ["all.Instance"]}, instances=[IID], seed=seed
    ) as server:
        plan = make_plan(seed, n, server)
        server.faults = faults
        loop = asyncio.get_running_loop()
        async with am.Client(TOKEN, url=server.url, retry=retry, timeout=ATTEMPT_TIMEOUT) as client:
            started = loop.time()
            result = await am.bulk_import(
                client, instanceId=IID, members=iter(plan.rows), concurrency=concurrency
            )
            seconds = loop.time() - started
        await settle(server)
        check_truth(plan, result, server, complete=complete, admits_doubt=admits_doubt)
    return Soak(result, server, seconds)


def check_rate_limit(soak: Soak, faults: Faults) -> None:
    """Every 429 the server sent was seen and counted, and the client did meet some 429s
    whenever it sent more requests than the server's token bucket could have let through.

    A bucket of ``burst`` tokens refilled at ``rate`` a second admits at most
    ``burst + rate * seconds`` requests in ``seconds``: a run that sent more than that
    cannot have gone without a 429, however fast or slow the machine ran it.
    """
    server, result = soak.server, soak.result
    sent_429 = server.stats.faults[FaultKind.RATE_LIMIT]
    assert server.stats.by_status[429] == sent_429
    # A 429 the client never read (its attempt timed out first) is not counted by it.
    assert 0 < result.rate_limited <= sent_429 or result.rate_limited == sent_429 == 0
    burst = faults.rate_limit_burst or max(faults.rate_limit, 1.0)
    admissible = burst + faults.rate_limit * soak.seconds
    if server.stats.requests > admissible:
        assert sent_429 > 0 and result.rate_limited > 0, (
            server.stats.requests,
            admissible,
            server.stats.faults,
        )


# -- CI: short ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "concurrency"), [(1, 64), (2, 3), (3, 24)], ids=["high", "low", "mid"]
)
async def test_soak_every_fault_at_once(seed: int, concurrency: int) -> None:
    soak = await soak_once(seed, 1500, concurrency)
    faults = soak.server.stats.faults
    # The faults did fire: this is not a soak of a healthy server.
    for kind in (FaultKind.ERROR, FaultKind.DROP_BEFORE_COMMIT, FaultKind.DROP_AFTER_COMMIT):
        assert faults[kind] > 0, (kind, faults)
    if concurrency >= 24:  # enough requests for the rarer ones to come up
        assert faults[FaultKind.STALL] > 0, faults
    # Whether 800 req/s is outrun depends on the machine's speed: checked when it was.
    check_rate_limit(soak, EVERYTHING)
    assert soak.result.retries > 0


#: Rows of the rate-limited soak, and the seconds its requests must be spread over to
#: go without a 429: about ten times what the unpaced import of them takes on an idle
#: 2-core machine (~0.4 s), so only a machine ten times slower throughout escapes.
LIMITED_ROWS = 400
LIMITED_SECONDS = 4.0


async def test_soak_every_fault_at_once_rate_limit_always_trips() -> None:
    """All faults, and a rate limit the run exceeds by construction: 429s are certain.

    The limit is computed from the run's own request count: the import sends at least one
    POST per distinct new row (``posts_applied`` of them), and a bucket of ``burst`` tokens
    refilled at ``rate`` admits only ``burst + rate * LIMITED_SECONDS`` requests in
    ``LIMITED_SECONDS``; with the rate set so that this is fewer than the POSTs, an
    import without a 429 would have to be spread over more than ``LIMITED_SECONDS``.
    """
    # The same plan soak_once will make (it is a function of the seed), on a server that
    # is never started: only to count the rows.
    plan = make_plan(4, LIMITED_ROWS, FakeLosantServer(instances=[IID]))
    posts = len(plan.expected - plan.preexisting)
    burst = 64.0  # one wave at concurrency 64: the first wave alone nearly spends it
    faults = attrs.evolve(
        EVERYTHING, rate_limit=(posts - burst) / LIMITED_SECONDS, rate_limit_burst=burst
    )
    soak = await soak_once(4, LIMITED_ROWS, 64, faults=faults)
    assert soak.server.stats.posts_applied == posts
    check_rate_limit(soak, faults)
    assert soak.server.stats.faults[FaultKind.RATE_LIMIT] > 0, (soak.seconds, faults)
    assert soak.result.rate_limited > 0


@pytest.mark.parametrize("seed", [5, 6])
async def test_soak_giving_up_never_reports_a_member_as_failed(seed: int) -> None:
    """Two attempts only: rows really fail, and a failed row must not be a member.

    With so few attempts the last one is often a cut after commit: the member exists,
    and reporting the row failed would be a lie (a re-run would then call it "already a
    member", and the error report would send the user chasing a non-problem). Only when
    the lookup that would tell failed as well may the row fail, saying it "may have been
    applied".
    """
    faults = Faults(error_rate=0.2, drop_before_commit_rate=0.05, drop_after_commit_rate=0.2)
    stingy = am.RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.01, timeout=30.0)
    soak = await soak_once(
        seed, 600, 16, faults=faults, retry=stingy, complete=False, admits_doubt=True
    )
    assert any(not isinstance(f.error, am.ValidationError) for f in soak.result.failures)


# -- on demand: long ------------------------------------------------------------------------


def _long_seeds(config: pytest.Config) -> int:
    env = os.environ.get("ASYNCMEMBERS_SOAK_SEEDS")
    if env:
        return int(env)
    markexpr = getattr(config.option, "markexpr", "") or ""
    return 50 if "slow" in markexpr and "not slow" not in markexpr else 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ != "test_soak_long":
        return
    seeds = _long_seeds(metafunc.config)
    params: Iterator[Any]
    if seeds:
        params = iter(range(100, 100 + seeds))
    else:
        params = iter(
            [
                pytest.param(
                    0,
                    marks=pytest.mark.skip(
                        reason="long soak is opt-in: ASYNCMEMBERS_SOAK_SEEDS=N or -m slow"
                    ),
                )
            ]
        )
    metafunc.parametrize("seed", list(params))


@pytest.mark.slow
async def test_soak_long(seed: int) -> None:
    rows = int(os.environ.get("ASYNCMEMBERS_SOAK_ROWS", "4000"))
    rng = random.Random(seed)
    concurrency = rng.choice([1, 4, 16, 64, 128])
    await soak_once(seed, rows, concurrency)
