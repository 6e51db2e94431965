"""Request and response bodies of the REST API (jobs, events and stats reuse the core records)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from jobtrail.jobs import Event, Priority, Status

INT32 = 2**31 - 1
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
"""Text a database can store: no NUL characters."""


def _storable(value: Any, depth: int = 0) -> Any:
    """``value`` if every string and key in it can be stored (no NUL, nesting ≤ 64)."""
    if depth > 64:
        raise ValueError("nested more than 64 levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)
    return value


Storable = Annotated[Any, AfterValidator(_storable)]
StorableObject = Annotated[dict[str, Any], AfterValidator(_storable)]
Count = Annotated[int, Field(ge=0, le=INT32)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(_Body):
    """A job to queue for a registered kind."""

    kind: Text = Field(min_length=1, max_length=200, examples=["listing_sync"])
    payload: StorableObject = Field(default_factory=dict, examples=[{"account_id": "A1"}])
    owner: Text | None = Field(None, min_length=1, max_length=200, examples=["A1"])
    key: Text | None = Field(None, min_length=1, max_length=255, examples=["msg-8c1f"])
    priority: Priority | None = None
    trigger: Text = Field("api", min_length=1, max_length=50)
    run_after: datetime | None = None
    labels: StorableObject = Field(default_factory=dict)


class SubmitResponse(BaseModel):
    """Where to follow a submitted job."""

    job_id: str
    status: Status
    status_url: str


class ExternalJobRequest(_Body):
    """A tracking-only job for work that runs elsewhere and reports here."""

    kind: Text = Field(min_length=1, max_length=200, examples=["nightly_export"])
    owner: Text | None = Field(None, min_length=1, max_length=200)
    key: Text | None = Field(None, min_length=1, max_length=255)
    trigger: Text = Field("external", min_length=1, max_length=50)
    status: Literal["queued", "waiting", "running"] = "running"
    priority: Priority = Priority.NORMAL
    payload: StorableObject = Field(default_factory=dict)
    labels: StorableObject = Field(default_factory=dict)
    items_total: Count | None = None
    message: Text | None = Field(None, max_length=4000)


class PatchJobRequest(_Body):
    """Progress and/or a status change reported by the code running an external job."""

    progress: float | None = Field(None, ge=0, le=100)
    message: Text | None = Field(None, max_length=4000)
    items_total: Count | None = None
    items_succeeded: Count | None = None
    items_failed: Count | None = None
    progress_data: StorableObject | None = None
    status: Status | None = None
    result: Storable = None
    error_message: Text | None = Field(None, max_length=4000)
    error_details: Storable = None


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
