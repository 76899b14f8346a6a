"""Import an uploaded member file in the background of a FastAPI app, with progress.

Needs ``pip install 'asyncmembers[examples]'`` (FastAPI and httpx), and an ASGI server such
as uvicorn (``pip install uvicorn``) to serve it::

    asyncmembers fake-server --port 8080 &
    LOSANT_API_URL=http://127.0.0.1:8080 LOSANT_API_TOKEN=test-token \\
    LOSANT_INSTANCE_ID=575ec8687ae143cd83dc4a97 uvicorn examples.fastapi_app:app

    curl --data-binary @members.csv 'http://127.0.0.1:8000/imports?filename=members.csv'
    curl http://127.0.0.1:8000/imports/<id>

The same pattern as ``aiohttp_app.py``: the ``lifespan`` owns one
:class:`asyncmembers.Client`; each upload becomes a task running
:func:`asyncmembers.bulk_import` with a :class:`asyncmembers.Progress` that the status
endpoint reads; shutdown cancels running imports cleanly.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from asyncmembers import Client
from asyncmembers.sources import SourceError, open_source

try:  # run as "uvicorn examples.fastapi_app:app" or imported from the examples folder
    from .aiohttp_app import MAX_UPLOAD, Job, run_job
except ImportError:
    from aiohttp_app import MAX_UPLOAD, Job, run_job  # type: ignore[import-not-found,no-redef]


def create_app(*, token: str, url: str, instance_id: str) -> FastAPI:
    """The app: one Client for its lifetime (lifespan); imports cancelled at shutdown."""
    jobs: dict[str, Job] = {}
    state: dict[str, Client] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Client(auth_token=token, url=url) as client:
            state["client"] = client
            yield
            tasks = [job.task for job in jobs.values() if job.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(lifespan=lifespan)

    @app.post("/imports", status_code=202)
    async def start_import(request: Request, filename: str = "upload") -> dict[str, Any]:
        upload = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD:
                upload.close()
                raise HTTPException(413, "the upload is too large")
            upload.write(chunk)
        upload.seek(0)
        try:
            open_source(upload, name=filename).close()
        except SourceError as exc:
            upload.close()
            raise HTTPException(400, str(exc)) from None
        upload.seek(0)
        job = Job(filename)
        job.task = asyncio.create_task(run_job(state["client"], instance_id, job, upload))
        jobs[job.id] = job
        return job.to_dict()

    @app.get("/imports/{job_id}")
    async def show_import(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "no such import")
        return job.to_dict()

    return app


def _from_environment() -> FastAPI | None:
    token, instance = os.environ.get("LOSANT_API_TOKEN"), os.environ.get("LOSANT_INSTANCE_ID")
    if not token or not instance:
        return None
    url = os.environ.get("LOSANT_API_URL", "https://api.losant.com")
    return create_app(token=token, url=url, instance_id=instance)


#: For ``uvicorn examples.fastapi_app:app`` (``None`` until the environment is set).
app = _from_environment()
