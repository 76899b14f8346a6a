"""Adversarial findings (h8-attack): sync_members and bulk_import against hostile member
lists and misbehaving callers. Each test asserts the promised behaviour and fails on the
code it was written against.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "tok-ATTACK-sync-0123456789"
FAST = am.RetryPolicy(attempts=2, wait_initial=0.001, wait_max=0.01, timeout=10)


def uid(i: int) -> str:
    return "%024x" % (i + 1)


class Instance:
    """A small stateful Losant-like server whose member *listing* can be made hostile."""

    def __init__(self, n: int, listing: str) -> None:
        self.members = {
            uid(i): {"userId": uid(i), "email": f"m{i}@example.com", "role": "view"}
            for i in range(n)
        }
        self.listing = listing
        self.changes: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method == "GET" and path.endswith("/members"):
            items = [dict(m) for m in self.members.values()]
            if self.listing == "duplicates":  # the first three members listed twice
                items = items + [dict(m) for m in items[:3]]
            if self.listing == "no-email":  # the first member listed by userId only
                items[0] = {"userId": items[0]["userId"], "role": items[0]["role"]}
            return web.json_response({"items": items, "count": len(items)})
        self.changes.append((request.method, path))
        if request.method == "DELETE":
            user = path.rsplit("/", 1)[1]
            if self.members.pop(user, None) is None:
                return web.json_response(
                    {"type": "NotFound", "message": "Member was not found"}, status=404
                )
            return web.json_response({"success": True})
        if request.method == "PATCH":
            user = path.rsplit("/", 1)[1]
            body = await request.json()
            self.members[user]["role"] = body["role"]
            return web.json_response(self.members[user])
        if request.method == "POST":
            body: dict[str, Any] = await request.json()
            email = str(body.get("email", "")).lower()
            if any(m["email"] == email for m in self.members.values()):
                return web.json_response(
                    {"type": "BadRequest", "message": "User is already a member of the instance"},
                    status=400,
                )
            new = uid(1000 + len(self.members))
            self.members[new] = {"userId": new, "email": email, "role": body["role"]}
            return web.json_response(self.members[new])
        return web.json_response({"type": "NotFound", "message": "Route was not found"}, status=404)


@asynccontextmanager
async def serve(instance: Instance) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", instance.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_sync_prune_never_removes_a_member_listed_twice_by_the_server() -> None:
    """The server's listing names three members twice (a buggy backend, or a list that
    shifted while it was read). Every one of the 20 members is in the desired list, so a
    prune must remove nobody; the code under test DELETEs the three duplicated members."""
    instance = Instance(20, listing="duplicates")
    desired = [{"email": f"m{i}@example.com", "role": "view"} for i in range(20)]
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        result = await am.sync_members(
            client, instanceId=IID, members=desired, prune=True, max_removals=100
        )
    assert [c for c in instance.changes if c[0] == "DELETE"] == []
    assert len(instance.members) == 20
    assert result.removed == 0


async def test_sync_prune_does_not_remove_a_member_the_server_just_said_is_present() -> None:
    """The listing shows member m0 by userId only (email is optional in the Instance Member
    schema). The desired row for m0 is POSTed and the server answers "already a member":
    m0 is in the desired list and present. The prune must not then DELETE the unmatched
    userId (which is m0): sync never removes a member the desired list holds."""
    instance = Instance(20, listing="no-email")
    desired = [{"email": f"m{i}@example.com", "role": "view"} for i in range(20)]
    async with serve(instance) as url, am.Client(auth_token=TOKEN, url=url, retry=FAST) as client:
        # refusing (a LosantError) is acceptable; removing m0 is not
        with contextlib.suppress(am.LosantError):
            await am.sync_members(
                client, instanceId=IID, members=desired, prune=True, max_removals=100
            )
    assert uid(0) in instance.members, instance.changes


def rows_then_boom(n: int, boom: int) -> Iterator[dict[str, str]]:
    for i in range(n):
        if i == boom:
            raise RuntimeError(f"the caller's row source failed at row {i}")
        yield {"email": f"gen{i}@example.com", "role": "view"}


async def test_bulk_import_generator_raising_midway_keeps_the_partial_result() -> None:
    """A row generator that raises after 20 rows: 20 members were created on the server.
    As with an on_outcome that raises, the caller's exception must carry `.result` with
    those 20 rows accounted (total == created + updated + skipped + failed == 20); the
    code under test raises it bare, so the caller cannot tell what was done."""
    async with (
        FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID], seed=0) as server,
        am.Client(auth_token=TOKEN, url=server.url, retry=FAST) as client,
    ):
        try:
            await am.bulk_import(
                client, instanceId=IID, members=rows_then_boom(50, boom=20), concurrency=4
            )
        except RuntimeError as exc:
            result = getattr(exc, "result", None)
            assert result is not None, "the partial BulkResult is lost"
            assert result.total == 20
            assert result.created + result.updated + result.skipped + result.failed == 20
            assert result.created == len(server.members(IID)) == 20
        else:
            raise AssertionError("the generator's error must reach the caller")
