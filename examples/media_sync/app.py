"""Media sync: a scheduled (and on-demand) sync of a media library whose progress moves through
stages, read through this service's own progress endpoints, a small polling page, and the
jobtrail dashboard at ``/jobtrail/``.

``uvicorn examples.media_sync.app:app --port 8000``; settings from the environment:
``JOBTRAIL_DATABASE_URL``, ``MEDIA_SYNC_UPSTREAM_URL`` (the media client) and
``MEDIA_SYNC_INTERVAL`` (seconds between scheduled runs).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

import jobtrail
from jobtrail.web import create_app

UPSTREAM_URL = os.environ.get("MEDIA_SYNC_UPSTREAM_URL", "http://127.0.0.1:8001")
INTERVAL = float(os.environ.get("MEDIA_SYNC_INTERVAL", "3600"))
PAGE = Path(__file__).with_name("page.html")

tracker = jobtrail.Tracker()


def fetch(client: httpx.Client, path: str) -> Any:
    """GET ``path`` from the media client; its error fails the run with the client's words."""
    response = client.get(path)
    if response.is_error:
        raise RuntimeError(f"Media client error: {response.json().get('detail')}")
    return response.json()


@tracker.job("media_sync", timeout=3600)
def media_sync(ctx: jobtrail.Context) -> dict[str, int]:
    ctx.stage("starting", start=0, end=10, message="Starting media sync")
    with httpx.Client(base_url=UPSTREAM_URL, timeout=30) as client:
        ctx.stage("fetching", start=10, end=20, message="Fetching media items from client")
        items = fetch(client, "/items")["items"]
        total = len(items)
        ctx.stage("processing", start=20, end=90, message=f"Found {total} items to process")
        for n, item in enumerate(ctx.items(items), 1):  # 20 % → 90 %, item by item
            ctx.progress(message=f"Processing item {n} of {total}", current_item=item["title"])
            fetch(client, f"/items/{item['id']}")
            ctx.advance()
    ctx.stage("done", start=100, message="Media sync completed successfully")
    return {"processed": total}


tracker.schedule("media-sync", "media_sync", every=INTERVAL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    with tracker.worker():  # runs here, and fires the schedule
        yield


app = FastAPI(title="Media sync", lifespan=lifespan)
app.mount("/jobtrail", create_app(tracker, no_auth=True))  # loopback demo: no tokens

STATUSES = {"succeeded": "completed", "partial": "completed"}


def run_progress(job: jobtrail.Job) -> dict[str, Any]:
    """A run's progress in this service's words (queued and waiting runs show ``running``)."""
    status = STATUSES.get(job.status, "failed" if job.terminal else "running")
    return {
        "id": job.id,
        "status": status,
        "progress": job.progress,
        "totalItems": job.items_total or 0,
        "processedItems": job.items_done or 0,
        "statusMessage": job.error_message if status == "failed" else job.message,
        "progressData": {"stage": job.stage, **(job.progress_data or {})},
    }


def run(run_id: str, kind: str | None = None) -> jobtrail.Job:
    try:
        job = tracker.get(run_id)
    except jobtrail.JobNotFound:
        job = None
    if job is None or (kind is not None and job.kind != kind):
        raise HTTPException(404, f"Run {run_id!r} not found")
    return job


@app.post("/api/v1/jobs/media-sync", status_code=202)
def start_media_sync() -> dict[str, str]:
    job = media_sync.submit(trigger="manual")
    progress_url = f"/api/v1/jobs/media-sync/{job.id}/progress"
    return {"id": job.id, "status_url": progress_url, "page_url": f"/runs/{job.id}"}


@app.get("/api/v1/jobs/active")
def active_runs() -> list[dict[str, Any]]:
    return [run_progress(job) for job in tracker.active()]


@app.get("/api/v1/jobs/runs/{run_id}/progress")
def progress(run_id: str) -> dict[str, Any]:
    return run_progress(run(run_id))


@app.get("/api/v1/jobs/media-sync/{run_id}/progress")
def media_sync_progress(run_id: str) -> dict[str, Any]:
    return run_progress(run(run_id, "media_sync"))


@app.get("/runs/{run_id}", include_in_schema=False)
def page(run_id: str) -> FileResponse:
    run(run_id)
    return FileResponse(PAGE, media_type="text/html")
