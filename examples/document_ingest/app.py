"""document_ingest: a job-management API over Celery ingestion, in this app's own vocabulary.

jobtrail keeps the records (through its Celery integration); this module maps them to the
app's job view, statuses and priorities, and mounts the jobtrail dashboard at ``/jobtrail/``.
The caller's user id comes from the ``X-User-Id`` header (an auth proxy sets it).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Literal

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, Field

from examples.document_ingest.tasks import celery, ingest_document, tracker
from jobtrail import (
    JSON,
    IllegalTransition,
    Job,
    JobNotFound,
    NewJob,
    Priority,
    Status,
    WebhookRefused,
)
from jobtrail.integrations.celery import ENGINE_LABEL, OWNER_HEADER
from jobtrail.web import create_app

AppStatus = Literal[
    "PENDING", "WAITING_FOR_REMOTE_WORKER", "PROCESSING", "FINISHED", "FAILED", "CANCELLED"
]
AppPriority = Literal["LOW", "NORMAL", "HIGH", "URGENT"]
STATUS: dict[Status, AppStatus] = {
    Status.QUEUED: "PENDING",
    Status.WAITING: "WAITING_FOR_REMOTE_WORKER",
    Status.RUNNING: "PROCESSING",
    Status.SUCCEEDED: "FINISHED",
    Status.PARTIAL: "FAILED",
    Status.FAILED: "FAILED",
    Status.CANCELLED: "CANCELLED",
}
CANCELLABLE = {"PENDING", "WAITING_FOR_REMOTE_WORKER", "PROCESSING"}
CELERY_PRIORITY = {"URGENT": 0, "HIGH": 3, "NORMAL": 6, "LOW": 9}  # Redis serves 0 first
REMOTE_QUEUE, REMOTE_TYPES = "remote", {"scan"}
UserId = Annotated[str, Header(alias="X-User-Id", min_length=1, max_length=100)]
INGESTED = ["job.succeeded", "job.partial", "job.failed", "job.cancelled"]
"""What an uploader's webhook is called for: each of its documents' end."""


class DocumentIn(BaseModel):
    document_name: str = Field(min_length=1, max_length=200, pattern=r"^[^/\\]+$")
    document_type: str = Field(pattern=r"^[a-z0-9_]{1,30}$")
    document_id: str | None = Field(None, min_length=1, max_length=100)
    priority: AppPriority = "NORMAL"
    metadata: dict[str, JSON] = {}


class WebhookIn(BaseModel):
    url: str = Field(min_length=1, max_length=2048)


class WebhookView(BaseModel):
    id: str
    url: str
    events: list[str]
    secret: str = Field(description="Verifies the calls (Standard Webhooks); shown only here.")


class JobView(BaseModel):
    id: str
    document_id: str
    document_name: str
    document_type: str
    user_id: str | None
    status: AppStatus
    priority: AppPriority
    percentage: float
    summary: str | None
    start_date: datetime | None
    end_date: datetime | None
    duration_seconds: float | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, JSON]
    error_details: dict[str, JSON] | None

    @classmethod
    def of(cls, job: Job) -> JobView:
        document = job.payload["kwargs"]
        failed = job.status in (Status.FAILED, Status.PARTIAL)
        return cls(
            id=job.id,
            **{k: document[k] for k in ("document_id", "document_name", "document_type")},
            user_id=job.owner,
            status=STATUS[job.status],
            priority=job.priority.value.upper(),
            percentage=job.progress,
            summary=job.message,
            start_date=job.started_at,
            end_date=job.completed_at,
            duration_seconds=job.duration_seconds,
            created_at=job.created_at,
            updated_at=job.updated_at,
            metadata=document["metadata"],
            error_details={"stage": job.stage, "error": job.error_message, **job.error_details}
            if failed
            else None,
        )


class JobList(BaseModel):
    jobs: list[JobView]
    total_count: int


class Statistics(BaseModel):
    total_jobs: int
    jobs_by_status: dict[str, int]
    jobs_by_type: dict[str, int]
    average_duration_seconds: float | None
    success_rate: float | None
    total_processing_time: float
    active_jobs: int


def remote_worker_live() -> bool:
    return any(REMOTE_QUEUE in (w.queues or [REMOTE_QUEUE]) for w in tracker.workers())


def owned(job_id: str, user: str) -> Job:
    """The caller's job; another user's is as absent as a missing one."""
    try:
        job = tracker.get(job_id)
    except JobNotFound:
        job = None
    if job is None or job.owner != user:
        raise HTTPException(404, f"job {job_id} not found")
    return job


api = APIRouter(prefix="/api/v1")


@api.post("/documents", status_code=201)
def create_document(document: DocumentIn, user: UserId) -> JobView:
    """Create the ingestion job and send its Celery task (to the remote queue for scans)."""
    job_id = str(uuid.uuid4())
    kwargs = document.model_dump(exclude={"priority"}) | {
        "document_id": document.document_id or job_id
    }
    queue = REMOTE_QUEUE if document.document_type in REMOTE_TYPES else "documents"
    labels = ENGINE_LABEL | {"document_type": document.document_type}
    job, _ = tracker.add(  # recorded with our labels first; the Celery publish then finds it
        NewJob(
            "ingest_document",
            {"args": [], "kwargs": kwargs},
            id=job_id,
            key=f"celery:{job_id}",
            owner=user,
            trigger="api",
            queue=queue,
            priority=Priority(document.priority.lower()),
            labels=labels,
            max_attempts=1 + 3,
        )
    )
    if queue == REMOTE_QUEUE and not remote_worker_live():
        job = tracker.report(
            job_id, {"message": "no worker consumes queue 'remote'"}, Status.WAITING
        )
    ingest_document.apply_async(
        kwargs=kwargs,
        task_id=job_id,
        queue=queue,
        priority=CELERY_PRIORITY[document.priority],
        headers={OWNER_HEADER: user},
    )
    return JobView.of(job)


@api.post("/webhooks", status_code=201)
def subscribe(hook: WebhookIn, user: UserId) -> WebhookView:
    """Have ``url`` called, signed per Standard Webhooks, when one of the caller's documents
    is ingested (or fails, or is cancelled): the uploader stops polling its jobs."""
    try:
        subscription, secret = tracker.webhooks.subscribe(
            hook.url, owner=user, event_types=INGESTED, kinds=["ingest_document"], actor=user
        )
    except WebhookRefused as exc:
        raise HTTPException(422, str(exc)) from None
    return WebhookView(id=subscription.id, url=subscription.url, events=INGESTED, secret=secret)


@api.get("/jobs")
def list_jobs(
    user: UserId,
    status: AppStatus | None = None,
    document_type: str | None = None,
    priority: AppPriority | None = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    page = tracker.list(
        owner=user,
        kind="ingest_document",
        status=[s for s, name in STATUS.items() if name == status] or None,
        labels={"document_type": document_type} if document_type else None,
        priority=priority.lower() if priority else None,
        created_from=date_from,
        created_to=date_to,
        limit=limit,
        offset=offset,
    )
    return JobList(jobs=[JobView.of(j) for j in page.jobs], total_count=page.total_count)


@api.get("/jobs/active")
def active_jobs(user: UserId) -> JobList:
    jobs = [JobView.of(j) for j in tracker.active(owner=user)]
    return JobList(jobs=jobs, total_count=len(jobs))


@api.get("/jobs/statistics")
def statistics(user: UserId, days: Annotated[int, Query(ge=1, le=365)] = 30) -> Statistics:
    stats = tracker.stats(days, owner=user, group_by="label:document_type")
    by_status: Counter[str] = Counter()
    for status, count in stats.jobs_by_status.items():
        by_status[STATUS[Status(status)]] += count
    return Statistics(
        total_jobs=stats.total_jobs,
        jobs_by_status=dict(by_status),
        jobs_by_type={t: group.total_jobs for t, group in stats.groups.items()},
        average_duration_seconds=stats.average_duration_seconds,
        success_rate=stats.success_rate,
        total_processing_time=stats.total_processing_seconds,
        active_jobs=stats.active_jobs,
    )


@api.post("/jobs/cleanup")
def cleanup(days: Annotated[int, Query(ge=0, le=3650)] = 30) -> dict[str, int]:
    """Delete finished jobs that ended more than ``days`` ago (an operator's call)."""
    return {"deleted_count": tracker.purge(succeeded_days=days, other_days=days)}


@api.get("/jobs/{job_id}")
def get_job(job_id: str, user: UserId) -> JobView:
    return JobView.of(owned(job_id, user))


@api.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, user: UserId) -> JobView:
    """Cancel a pending or processing job; the Celery task is revoked."""
    job = owned(job_id, user)
    if STATUS[job.status] not in CANCELLABLE:
        raise HTTPException(409, f"a {STATUS[job.status]} job cannot be cancelled")
    try:
        return JobView.of(tracker.cancel(job_id, actor=user))
    except IllegalTransition as exc:  # it ended meanwhile
        raise HTTPException(409, str(exc)) from exc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    worker = tracker.worker(consume=False)  # maintenance only: purges, the workers registry
    worker.start()
    try:
        yield
    finally:
        await to_thread.run_sync(worker.stop)
        celery.close()


app = FastAPI(title="document_ingest", lifespan=lifespan)
app.include_router(api)
app.mount("/jobtrail", create_app(tracker, no_auth=True, run_worker=False))
