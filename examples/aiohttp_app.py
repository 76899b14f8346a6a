"""Import an uploaded member file in the background of an aiohttp.web app, with progress.

Run it (against the embedded server here; point the variables at Losant for real)::

    asyncmembers fake-server --port 8080 &
    LOSANT_API_URL=http://127.0.0.1:8080 LOSANT_API_TOKEN=test-token \\
    LOSANT_INSTANCE_ID=575ec8687ae143cd83dc4a97 python examples/aiohttp_app.py

    curl --data-binary @members.csv http://127.0.0.1:8000/imports       # 202 {"id": ...}
    curl http://127.0.0.1:8000/imports/<id>                             # progress, result

The pattern: one :class:`asyncmembers.Client` for the app's lifetime (``cleanup_ctx``),
one task per upload running :func:`asyncmembers.bulk_import` with a
:class:`asyncmembers.Progress` that the status handler reads at any time, and every
running import cancelled cleanly at shutdown (its journal, if any, is flushed).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import IO, Any

from aiohttp import web

from asyncmembers import Client, LosantError, Progress, bulk_import
from asyncmembers.sources import SourceError, open_source

#: Uploads larger than this are refused (413) before any row is read.
MAX_UPLOAD = 50 * 1024 * 1024


class Job:
    """One background import: its progress, its task, and how it ended."""

    def __init__(self, name: str) -> None:
        self.id = uuid.uuid4().hex
        self.name = name
        self.progress = Progress()
        self.task: asyncio.Task[None] | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        p = self.progress
        state = "running" if self.task is not None and not self.task.done() else "finished"
        return {
            "id": self.id,
            "file": self.name,
            "state": "failed" if self.error else state,
            "progress": {
                "done": p.done,
                "total": p.total,
                "created": p.created,
                "updated": p.updated,
                "skipped": p.skipped,
                "failed": p.failed,
                "rate": round(p.rate, 1),
                "eta": None if p.eta is None else round(p.eta, 1),
                "elapsed": round(p.elapsed, 3),
            },
            "result": self.result,
            "error": self.error,
        }


CLIENT = web.AppKey("client", Client)
INSTANCE = web.AppKey("instance", str)
JOBS = web.AppKey("jobs", dict[str, Job])


async def run_job(client: Client, instance_id: str, job: Job, upload: IO[bytes]) -> None:
    """The background task: read the upload as it imports; keep the result as JSON."""
    try:
        with upload, open_source(upload, name=job.name) as rows:
            result = await bulk_import(
                client, instanceId=instance_id, members=rows, progress=job.progress
            )
        job.result = result.to_dict()
    except LosantError as exc:  # a bad file (SourceError) or a fatal API error
        job.error = str(exc)
        partial = getattr(exc, "result", None)
        job.result = partial.to_dict() if partial is not None else None


async def start_import(request: web.Request) -> web.Response:
    """``POST /imports``: the body is a CSV, JSON Lines or JSON array member file."""
    # Spool the upload (memory up to 1 MB, then a temporary file): the import streams it.
    upload = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - the job closes it
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_UPLOAD:
            upload.close()
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_UPLOAD, actual_size=size)
        upload.write(chunk)
    upload.seek(0)
    name = request.query.get("filename", "upload")
    job = Job(name)
    try:
        # Check the header (or the '[') now, so a file that cannot be read is a 400 at once.
        open_source(upload, name=name).close()
    except SourceError as exc:
        upload.close()
        raise web.HTTPBadRequest(text=str(exc)) from None
    upload.seek(0)
    app = request.app
    job.task = asyncio.create_task(run_job(app[CLIENT], app[INSTANCE], job, upload))
    app[JOBS][job.id] = job
    return web.json_response(job.to_dict(), status=202)


async def show_import(request: web.Request) -> web.Response:
    """``GET /imports/{id}``: progress while it runs, then the result."""
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text="no such import")
    return web.json_response(job.to_dict())


def create_app(*, token: str, url: str, instance_id: str) -> web.Application:
    """The app: one Client for its lifetime; imports cancelled cleanly at shutdown."""
    app = web.Application(client_max_size=MAX_UPLOAD)
    app[INSTANCE] = instance_id
    app[JOBS] = {}

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        async with Client(auth_token=token, url=url) as client:
            app[CLIENT] = client
            yield
            tasks = [job.task for job in app[JOBS].values() if job.task is not None]
            for task in tasks:
                task.cancel()  # bulk_import stops its workers and closes its journal
            await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(client_ctx)
    app.router.add_post("/imports", start_import)
    app.router.add_get("/imports/{id}", show_import)
    return app


def main() -> None:
    app = create_app(
        token=os.environ["LOSANT_API_TOKEN"],
        url=os.environ.get("LOSANT_API_URL", "https://api.losant.com"),
        instance_id=os.environ["LOSANT_INSTANCE_ID"],
    )
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))


if __name__ == "__main__":
    main()
