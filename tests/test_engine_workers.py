"""The engine starts workers as jobs need them, never ``concurrency`` of them up front.

(10,000, not 100,000,000 as the attack test uses: a regression then fails here at once
instead of exhausting the machine's memory.)
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import asyncmembers as am
from asyncmembers.testing import FakeLosantServer
from tests.test_attack_hostile import serve

IID = "575ec8687ae143cd83dc4a97"
TOKEN = "tok-workers-0123456789"


@pytest.mark.parametrize("kind", ["import", "sync"])
async def test_a_huge_concurrency_on_three_rows_starts_a_handful_of_tasks(kind: str) -> None:
    tasks: list[int] = []

    def count(outcome: am.Outcome) -> None:
        tasks.append(len(asyncio.all_tasks()))

    rows = [{"email": f"w{i}@example.com", "role": "view"} for i in range(3)]
    async with (
        FakeLosantServer(tokens={TOKEN: ["all.Instance"]}, instances=[IID], seed=0) as server,
        am.Client(auth_token=TOKEN, url=server.url) as client,
    ):
        if kind == "import":
            result: am.BulkResult | am.SyncResult = await am.bulk_import(
                client, instanceId=IID, members=rows, concurrency=10_000, on_outcome=count
            )
        else:
            result = await am.sync_members(
                client, instanceId=IID, members=rows, concurrency=10_000, on_outcome=count
            )
        assert len(server.members(IID)) == 3
    assert result.total == 3 and result.ok
    assert len(tasks) == 3 and max(tasks) < 40, tasks


async def test_every_worker_is_busy_when_the_rows_outnumber_them() -> None:
    # 60 rows at concurrency 8 against a server that holds each POST a moment: the
    # workers started on demand still put 8 POSTs in flight at once, never more.
    in_flight = peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        if request.method == "GET":
            return web.json_response({"items": [], "count": 0})
        body = await request.json()
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.02)
        finally:
            in_flight -= 1
        return web.json_response({"email": body["email"], "role": body["role"]})

    rows = [{"email": f"b{i}@example.com", "role": "view"} for i in range(60)]
    async with serve(handler) as url, am.Client(auth_token=TOKEN, url=url) as client:
        result = await am.bulk_import(client, instanceId=IID, members=rows, concurrency=8)
    assert result.created == 60
    assert peak == 8
