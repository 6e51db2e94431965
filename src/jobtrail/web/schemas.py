"""Request and response bodies of the REST API (jobs, events and stats reuse the core records)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobtrail.jobs import Event, Priority, Status


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(_Body):
    """A job to queue for a registered kind."""

    kind: str = Field(min_length=1, max_length=200, examples=["listing_sync"])
    payload: dict[str, Any] = Field(default_factory=dict, examples=[{"account_id": "A1"}])
    owner: str | None = Field(None, min_length=1, max_length=200, examples=["A1"])
    key: str | None = Field(None, min_length=1, max_length=255, examples=["msg-8c1f"])
    priority: Priority | None = None
    trigger: str = Field("api", min_length=1, max_length=50)
    run_after: datetime | None = None
    labels: dict[str, Any] = Field(default_factory=dict)


class SubmitResponse(BaseModel):
    """Where to follow a submitted job."""

    job_id: str
    status: Status
    status_url: str


class ExternalJobRequest(_Body):
    """A tracking-only job for work that runs elsewhere and reports here."""

    kind: str = Field(min_length=1, max_length=200, examples=["nightly_export"])
    owner: str | None = Field(None, min_length=1, max_length=200)
    key: str | None = Field(None, min_length=1, max_length=255)
    trigger: str = Field("external", min_length=1, max_length=50)
    status: Status = Field(Status.RUNNING, description="queued, waiting or running")
    priority: Priority = Priority.NORMAL
    payload: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] = Field(default_factory=dict)
    items_total: int | None = Field(None, ge=0)
    message: str | None = Field(None, max_length=4000)


class PatchJobRequest(_Body):
    """Progress and/or a status change reported by the code running an external job."""

    progress: float | None = Field(None, ge=0, le=100)
    message: str | None = Field(None, max_length=4000)
    items_total: int | None = Field(None, ge=0)
    items_succeeded: int | None = Field(None, ge=0)
    items_failed: int | None = Field(None, ge=0)
    progress_data: dict[str, Any] | None = None
    status: Status | None = None
    result: Any = None
    error_message: str | None = Field(None, max_length=4000)
    error_details: Any = None


class ProgressResponse(BaseModel):
    """The live part of a job, for frequent polling."""

    job_id: str
    status: Status
    progress: float
    message: str | None
    items_total: int | None
    items_done: int | None
    items_succeeded: int | None
    items_failed: int | None
    eta_seconds: float | None
    updated_at: datetime


class EventsResponse(BaseModel):
    """A page of a job's history; pass ``next_after`` as ``after`` for the next page."""

    events: list[Event]
    next_after: int


class ScheduleRunOut(BaseModel):
    """One audited slot of a schedule."""

    slot_at: datetime
    outcome: str
    job_id: str | None
    worker: str | None
    at: datetime


class ScheduleOut(BaseModel):
    """A schedule with its next run and recent slots."""

    name: str
    kind: str
    cron: str | None
    every_seconds: float | None
    owner: str | None
    last_slot_at: datetime | None
    next_run_at: datetime | None
    recent_runs: list[ScheduleRunOut]


class HealthResponse(BaseModel):
    """Liveness and a store round trip."""

    status: str = Field(examples=["ok"])
    store: str = Field(examples=["ok"])
    schema_revision: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``{"detail": ...}``."""

    detail: Any = Field(examples=["job 'x' not found"])
