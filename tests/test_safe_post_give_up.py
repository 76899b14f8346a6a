"""Giving up on a POST whose confirming lookups fail: the error is the POST's, and says so.

Found by the fault soak (``test_soak_giving_up_never_reports_a_member_as_failed[5]``, once,
under uvloop): a row the server had in fact stored was reported failed with an error that
read as the lookup GET's 500 and did not say the POST "may have been applied". Here the
same situation is made deterministic with a real server on loopback: the POST is stored and
then answered badly (a cut, or a 5xx), and every lookup meant to confirm it is answered 500
until the attempts or the time budget run out. The only truthful outcome is the POST's
error, naming POST, saying that it may have been applied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

import asyncmembers as am

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "tok-give-up-9f86d081884c7d659a2feaa0"
ROW = {"email": "stored@example.com", "role": "view"}


class Server:
    """Stores every POST, then answers it with ``post_answer``; answers every lookup 500.

    The unfiltered list (the bulk importer's read of the members before it starts) is
    answered empty, as it was before the POST.
    """

    def __init__(self, post_answer: str) -> None:
        self.post_answer = post_answer
        self.stored: list[dict[str, Any]] = []
        self.gets = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            self.stored.append(await request.json())
            if self.post_answer == "cut":
                request.protocol.force_close()  # the connection ends with no answer
                return web.Response(status=500)
            status = int(self.post_answer)
            return web.json_response({"type": "Unavailable", "message": "busy"}, status=status)
        if "filter" not in request.query:
            return web.json_response({"items": [], "count": 0})
        self.gets += 1
        return web.json_response({"type": "InternalError", "message": "lookup broke"}, status=500)


@asynccontextmanager
async def serve(server: Server) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


POLICIES = {
    "2-attempts": am.RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.002, timeout=30),
    "4-attempts": am.RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.002, timeout=30),
    # Attempts to spare: the time budget ends it, part-way through the lookups' retries.
    "budget": am.RetryPolicy(attempts=1000, wait_initial=0.01, wait_max=0.02, timeout=0.4),
}


def assert_truthful(err: BaseException, server: Server) -> None:
    assert server.stored == [ROW]  # the server did store the member: exactly once
    assert server.gets > 0  # and the client did try to confirm it
    assert isinstance(err, am.LosantError)
    assert err.method == "POST", repr(err)
    assert str(err).startswith("POST "), str(err)
    assert err.may_have_been_applied, repr(err)
    assert "may have been applied" in err.message, err.message
    assert not err.fatal


@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
@pytest.mark.parametrize("post_answer", ["cut", "500", "503"])
async def test_post_gives_up_with_its_own_error(post_answer: str, policy: str) -> None:
    server = Server(post_answer)
    async with serve(server) as url, am.Client(TOKEN, url=url, retry=POLICIES[policy]) as c:
        with pytest.raises(am.LosantError) as info:
            await c.instance_members.post(instanceId=IID, member=ROW)
    assert_truthful(info.value, server)


@pytest.mark.parametrize("post_answer", ["cut", "500"])
async def test_bulk_row_that_gave_up_admits_it_may_have_been_applied(post_answer: str) -> None:
    """The soak's own check: a failed row that is a member must say it may have been applied."""
    server = Server(post_answer)
    policy = POLICIES["2-attempts"]
    async with serve(server) as url, am.Client(TOKEN, url=url, retry=policy) as client:
        result = await am.bulk_import(client, instanceId=IID, members=[ROW])
    assert (result.created, result.skipped, len(result.failures)) == (0, 0, 1)
    assert_truthful(result.failures[0].error, server)
