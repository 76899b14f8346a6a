"""Adversarial findings (h8-attack): hostile servers on loopback.

Each test asserts the behaviour the SPEC/README promise; each fails on the code it was
written against.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

import asyncmembers as am

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "tok-ATTACK-0123456789abcdef"
FAST = am.RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.01, timeout=10, max_retry_after=5)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_huge_numeric_retry_after_is_a_losant_error_not_overflow() -> None:
    """A 429 whose Retry-After is an enormous delta-seconds must end as a LosantError
    (RateLimitError, quota exhausted), never a bare OverflowError escaping the client."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "TooManyRequests", "message": "slow down"},
            status=429,
            headers={"Retry-After": "99999999999999999999999"},
        )

    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        # pytest.raises lets any other exception (the OverflowError found) fail the test.
        with pytest.raises(am.RateLimitError):
            await client.instance_members.get(instanceId=IID)


async def test_huge_numeric_retry_after_in_bulk_import_is_accounted() -> None:
    """Same Retry-After inside bulk_import: the run must end with a LosantError (fatal,
    quota exhausted) carrying .result, or account the row, never an OverflowError."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "TooManyRequests", "message": "slow down"},
            status=429,
            headers={"Retry-After": "99999999999999999999999"},
        )

    rows = [{"email": "ann@example.com", "role": "view"}]
    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        # A Retry-After past max_retry_after is an exhausted quota: fatal (SPEC 3, exit 3),
        # so the run stops at once and .result holds only the rows finished before the
        # stop (as for every fatal error, test_bulk.test_fatal_error_stops_at_once): here
        # none. pytest.raises lets any other exception (the OverflowError) fail the test.
        with pytest.raises(am.RateLimitError) as info:
            await am.bulk_import(client, instanceId=IID, members=rows, concurrency=1)
    assert info.value.quota_exhausted
    result = info.value.result
    assert isinstance(result, am.BulkResult)
    assert result.total == result.created + result.updated + result.skipped + result.failed
    assert result.total == 0 and result.rate_limited >= 1


async def test_token_json_escaped_in_error_body_is_redacted() -> None:
    """A server echoing the token with a JSON \\uXXXX escape: once decoded the token is
    in the error's message and data. It must be redacted like a verbatim echo is."""
    escaped = f"\\u{ord(TOKEN[0]):04x}" + TOKEN[1:]
    body = '{"type": "BadRequest", "message": "bad token ' + escaped + '"}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=400, text=body, content_type="application/json")

    buf = io.StringIO()
    log_handler = logging.StreamHandler(buf)
    root = logging.getLogger()
    root.addHandler(log_handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        async with (
            serve(handler) as url,
            am.Client(auth_token=TOKEN, url=url, retry=FAST) as client,
        ):
            try:
                await client.instance_members.get(instanceId=IID)
            except am.BadRequestError as exc:
                seen = str(exc) + repr(exc) + repr(exc.data) + exc.message
                assert TOKEN not in seen
            result = await am.bulk_import(
                client, instanceId=IID, members=[{"email": "bob@example.com", "role": "view"}]
            )
            assert result.failed == 1
            text = json.dumps(result.to_dict(), default=str) + "".join(
                str(f.error) + repr(f.error) + repr(f.error.data) for f in result.failures
            )
            assert TOKEN not in text
    finally:
        root.removeHandler(log_handler)
        root.setLevel(old)
    assert TOKEN not in buf.getvalue()


async def test_post_answered_with_another_role_is_not_counted_created() -> None:
    """The server stores (and answers) the member with role admin although the row asked
    for view. The README: "a success must be what was asked (a POST's answer must be the
    member sent)". The code under test counts all 5 rows created, silently, while each
    member holds a role the list did not ask for."""
    store: dict[str, dict[str, str]] = {}

    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"items": list(store.values()), "count": len(store)})
        body = await request.json()
        email = body["email"].lower()
        store[email] = {"email": email, "role": "admin", "userId": "%024x" % (len(store) + 1)}
        return web.json_response(store[email])

    rows = [{"email": f"p{i}@example.com", "role": "view"} for i in range(5)]
    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.bulk_import(client, instanceId=IID, members=rows, concurrency=2)
    assert result.total == result.created + result.updated + result.skipped + result.failed == 5
    assert result.created == 0, "rows counted created with a role other than the one asked"
