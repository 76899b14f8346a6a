"""The web-app examples: upload a member file, import it in the background, read progress.

Each app runs against the embedded server (``losant_server``). They use the engine's
``asyncmembers.Progress`` (INTERFACES.md); until it exists the tests are skipped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

import pytest

import asyncmembers
from asyncmembers.testing import FakeLosantServer

pytestmark = pytest.mark.skipif(
    not hasattr(asyncmembers, "Progress"),
    reason="asyncmembers.Progress (h3-engine) is not merged yet",
)

ROWS = "email,role,name\n" + "".join(f"user{i}@example.com,view,User {i}\n" for i in range(60))
BAD = "name,team\nAda,Math\n"


async def _until_finished(get: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = await get(job_id)
        if status["state"] != "running":
            return status  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError("the import did not finish")


async def test_aiohttp_app_imports_in_the_background(losant_server: FakeLosantServer) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from examples.aiohttp_app import create_app

    app = create_app(
        token=losant_server.token, url=losant_server.url, instance_id=losant_server.instance_id
    )
    async with TestClient(TestServer(app)) as http:
        refused = await http.post("/imports", data=BAD.encode())
        assert refused.status == 400
        assert "has no role column" in await refused.text()

        started = await http.post("/imports?filename=members.csv", data=ROWS.encode())
        assert started.status == 202
        job = await started.json()
        assert job["state"] == "running" and job["file"] == "members.csv"

        async def get(job_id: str) -> dict[str, Any]:
            response = await http.get(f"/imports/{job_id}")
            assert response.status == 200
            data: dict[str, Any] = await response.json()
            return data

        status = await _until_finished(get, job["id"])
    assert status["state"] == "finished", status
    assert status["progress"]["done"] == 60 and status["progress"]["created"] == 60
    assert status["result"]["created"] == 60 and status["result"]["failed"] == 0
    assert len(losant_server.members(losant_server.instance_id)) == 60


@pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("httpx") is None,
    reason="pip install 'asyncmembers[examples]' for FastAPI and httpx",
)
# Starlette's TestClient prefers the httpx2 package and warns when it falls back to httpx.
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
async def test_fastapi_app_imports_in_the_background(losant_server: FakeLosantServer) -> None:
    from fastapi.testclient import TestClient

    from examples.fastapi_app import create_app

    app = create_app(
        token=losant_server.token, url=losant_server.url, instance_id=losant_server.instance_id
    )

    def drive() -> dict[str, Any]:
        # TestClient runs the app (and its lifespan) on a loop of its own, in this thread,
        # while the embedded server keeps running on the test's loop.
        with TestClient(app) as http:
            refused = http.post("/imports", content=BAD.encode())
            assert refused.status_code == 400
            started = http.post("/imports", params={"filename": "m.csv"}, content=ROWS.encode())
            assert started.status_code == 202, started.text
            job_id = started.json()["id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status: dict[str, Any] = http.get(f"/imports/{job_id}").json()
                if status["state"] != "running":
                    return status
                time.sleep(0.02)
        raise AssertionError("the import did not finish")

    status = await asyncio.to_thread(drive)
    assert status["state"] == "finished", status
    assert status["result"]["created"] == 60
    assert len(losant_server.members(losant_server.instance_id)) == 60
