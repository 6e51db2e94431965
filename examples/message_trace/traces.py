"""The scrape jobs behind the traces, and the trace view: jobtrail's records in this service's
vocabulary, with its retention (7 days after creation, 3 after completion)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Annotated, Literal, get_args
from urllib.parse import urljoin

import httpx
from fastapi import HTTPException, Query
from pydantic import BaseModel

from jobtrail import JSON, Context, Job, JobNotFound, Status, Tracker

JobType = Literal["property_scrape", "batch_check"]
TraceStatus = Literal["queued", "processing", "success", "failed", "not_found"]
STATUS: dict[Status, TraceStatus] = {
    Status.QUEUED: "queued",
    Status.WAITING: "queued",
    Status.RUNNING: "processing",
    Status.SUCCEEDED: "success",
    Status.PARTIAL: "failed",
    Status.FAILED: "failed",
    Status.CANCELLED: "failed",
}
UPSTREAM_URL = os.environ.get("MESSAGE_TRACE_UPSTREAM_URL", "http://127.0.0.1:8201")
"""The property site; a message's ``url`` may be a path on it, or a full URL."""
Limit = Annotated[int, Query(ge=1, le=100)]
Skip = Annotated[int, Query(ge=0)]
LISTING = re.compile(r'<script type="application/ld\+json">(.*?)</script>', re.S)


def scrape(ctx: Context, url: str, line_user_id: str, check_only: bool = False) -> JSON:
    """Fetch a property page: its listing, or ``not_found``; a 5xx raises (retried)."""
    ctx.progress(10, f"fetching {url}")
    response = httpx.get(urljoin(UPSTREAM_URL, url), timeout=10, follow_redirects=True)
    if response.status_code == 404:
        return {"outcome": "not_found"}
    response.raise_for_status()
    if check_only:
        return {"outcome": "available"}
    found = LISTING.search(response.text)
    return {"outcome": "scraped", "listing": json.loads(found.group(1)) if found else None}


def open_tracker(url: str | None = None) -> Tracker:
    """A tracker with the scrape kinds (``JOBTRAIL_DATABASE_URL`` unless ``url``)."""
    tracker = Tracker(url, retention_max_days=7)  # every trace goes 7 days after creation
    for kind in get_args(JobType):
        tracker.job(kind, max_attempts=3, retry_backoff=0.5, retain_succeeded=3, retain_failed=3)(
            scrape
        )
    return tracker


class Trace(BaseModel):
    id: str
    message_id: str | None
    job_type: str
    status: TraceStatus
    url: str
    line_user_id: str
    check_only: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    error: str | None
    result: JSON

    @classmethod
    def of(cls, job: Job) -> Trace:
        message = job.payload
        gone = isinstance(job.result, dict) and job.result.get("outcome") == "not_found"
        return cls(
            id=job.id,
            message_id=job.key,
            job_type=job.kind,
            status="not_found" if gone else STATUS[job.status],
            url=message["url"],
            line_user_id=message["line_user_id"],
            check_only=message.get("check_only", False),
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            error=job.error_message,
            result=job.result,
        )


class TracePage(BaseModel):
    jobs: list[Trace]
    total_count: int
    limit: int
    skip: int


def trace_of(tracker: Tracker, message_id: str) -> Trace:
    """The trace of one message; 404 until it arrives."""
    try:
        return Trace.of(tracker.get_by_key(message_id))
    except JobNotFound:
        raise HTTPException(404, f"no trace for message {message_id}") from None


def traces_of(tracker: Tracker, line_user_id: str, limit: int, skip: int) -> TracePage:
    """One user's traces, newest first."""
    page = tracker.list(labels={"line_user_id": line_user_id}, limit=limit, offset=skip)
    traces = [Trace.of(j) for j in page.jobs]
    return TracePage(jobs=traces, total_count=page.total_count, limit=limit, skip=skip)
