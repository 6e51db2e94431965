"""The job endpoints of the REST API: submit, create and report external jobs, read, list,
cancel and retry."""

# No ``from __future__ import annotations``: the endpoints' annotations name their router's
# caller dependency (a local alias), which FastAPI can only read evaluated.

from dataclasses import replace
from typing import Annotated, Any, TypeAlias

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from jobtrail.documents import job_document
from jobtrail.exceptions import JobNotFound, KeyInUse, NotAllowed
from jobtrail.jobs import Job, NewJob, Page
from jobtrail.states import Status
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal, visible
from jobtrail.web.schemas import (
    BODY,
    CONFLICT,
    KEY_TAKEN,
    NO_NUL,
    EventsResponse,
    ExternalJobRequest,
    JobFilter,
    JobId,
    NameQuery,
    PatchJobRequest,
    ProgressResponse,
    SubmitRequest,
    SubmitResponse,
    TimeQuery,
    label_filters,
    submitted,
)

JSON_FIELDS = frozenset({"result", "progress_data", "error_details"})
"""Fields of a report where null is a value; in the others it means "not reported"."""
EXISTING: dict[int | str, dict[str, Any]] = {
    200: {"model": Job, "description": "The job that already has this key"},
    **BODY,
    **KEY_TAKEN,
}


def owner_for(requested: str | None, caller: Principal) -> str | None:
    """The owner a new job gets: an owner token can only create jobs for its owner."""
    if caller.owner is not None and requested not in (None, caller.owner):
        raise NotAllowed(f"this token cannot create jobs for owner {requested!r}")
    return caller.owner if caller.owner is not None else requested


def _existing(tracker: Tracker, job: Job, key: str | None, caller: Principal) -> JSONResponse:
    """200 with the job that already has ``key``, unless the caller may not see it (then 409,
    revealing nothing of it; with keys scoped per owner that no longer happens)."""
    if not caller.can_see(job):
        raise KeyInUse(key or "")
    return JSONResponse(job_document(job, tracker.redactor))


def add_job_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add the ``/jobs`` endpoints to ``router``, their callers admitted through ``gate``."""
    _add_reads(router, tracker, gate)  # first: FastAPI tries routes in order
    _add_writes(router, tracker, gate)
    _add_actions(router, tracker, gate)


def _add_writes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.post(
        "/jobs", status_code=202, response_model=SubmitResponse, responses=EXISTING, tags=["jobs"]
    )
    def submit_job(body: SubmitRequest, request: Request, caller: Caller) -> Any:
        """Queue a job of a registered kind; returns at once with where to follow it."""
        job, created = tracker.submit_or_get(
            body.kind,
            body.payload,
            owner=owner_for(body.owner, caller),
            key=body.key,
            priority=body.priority,
            trigger=body.trigger,
            run_after=body.run_after,
            labels=body.labels,
            actor=caller.name,
        )
        if not created:
            return _existing(tracker, job, body.key, caller)
        return submitted(request, job)

    @router.post(
        "/jobs/external", status_code=201, response_model=Job, responses=EXISTING, tags=["jobs"]
    )
    def create_external_job(body: ExternalJobRequest, caller: Caller) -> Any:
        """Create a tracking-only job for work that runs elsewhere and reports with PATCH;
        200 with the existing job when its ``key`` exists."""
        new = NewJob(
            kind=body.kind,
            payload=body.payload,
            key=body.key,
            owner=owner_for(body.owner, caller),
            trigger=body.trigger,
            priority=body.priority,
            labels=body.labels,
            status=Status(body.status),
            items_total=body.items_total,
            message=body.message,
            report_timeout=body.report_timeout,
        )
        job, created = tracker.add(new, actor=caller.name)
        if not created:
            return _existing(tracker, job, body.key, caller)
        return tracker.redactor.job(job)

    @router.patch(
        "/jobs/{job_id}", response_model=Job, responses={**CONFLICT, **BODY}, tags=["jobs"]
    )
    def report_job(job_id: JobId, body: PatchJobRequest, caller: Caller) -> Job:
        """Report progress and/or a new status of an external job."""
        visible(tracker, job_id, caller)
        values = {
            name: value
            for name, value in body.model_dump(exclude_unset=True, exclude={"status"}).items()
            if value is not None or name in JSON_FIELDS  # null: not reported
        }
        job = tracker.report(job_id, values, body.status, actor=caller.name)
        return tracker.redactor.job(job)


def _add_reads(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    shown = tracker.redactor.job

    # Before ``/jobs/{job_id}/…``: ``/jobs/by-key/progress`` is the job keyed "progress".
    @router.get("/jobs/by-key/{key:path}", response_model=Job, tags=["jobs"])
    def get_job_by_key(
        key: Annotated[str, Path(max_length=255, pattern=NO_NUL)],
        caller: Caller,
        owner: NameQuery = None,
    ) -> Job:
        """The job with idempotency key ``key``. Keys are scoped per owner: an owner token
        looks in its own jobs; an admin in ``owner``'s, or among the unowned jobs without it.
        404 exactly like a missing job."""
        if not caller.may_filter(owner):
            raise JobNotFound(key)
        return shown(tracker.get_by_key(key, caller.scope(owner)))

    @router.get("/jobs/active", response_model=list[Job], tags=["jobs"])
    def active_jobs(caller: Caller) -> list[Job]:
        """Queued, waiting and running jobs, newest first."""
        return [shown(j) for j in tracker.active(owner=caller.owner)]

    @router.get("/jobs/{job_id}", response_model=Job, tags=["jobs"])
    def get_job(job_id: JobId, caller: Caller) -> Job:
        """One job's full record."""
        return shown(visible(tracker, job_id, caller))

    @router.get("/jobs/{job_id}/progress", response_model=ProgressResponse, tags=["jobs"])
    def get_progress(job_id: JobId, caller: Caller) -> ProgressResponse:
        """The live part of a job, cheap to poll."""
        return ProgressResponse.of(visible(tracker, job_id, caller))

    @router.get("/jobs/{job_id}/events", response_model=EventsResponse, tags=["jobs"])
    def get_events(
        job_id: JobId,
        caller: Caller,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventsResponse:
        """A job's history, oldest first; page with ``after``."""
        visible(tracker, job_id, caller)
        events = tracker.events(job_id, after=after, limit=limit)
        return EventsResponse(events=events, next_after=events[-1].id if events else after)

    @router.get("/jobs", response_model=Page, tags=["jobs"])
    def list_jobs(
        caller: Caller,
        filters: Annotated[JobFilter, Depends()],
        created_from: TimeQuery = None,
        created_to: TimeQuery = None,
        q: NameQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Page:
        """Jobs matching every filter, newest first, with the exact total count."""
        if not caller.may_filter(filters.owner):
            return Page(jobs=[], total_count=0, limit=limit, offset=offset)
        page = tracker.list(
            owner=caller.scope(filters.owner),
            status=filters.status,
            kind=filters.kind,
            priority=filters.priority,
            trigger=filters.trigger,
            created_from=created_from,
            created_to=created_to,
            q=q,
            labels=label_filters(filters.label),
            limit=limit,
            offset=offset,
        )
        return replace(page, jobs=[shown(j) for j in page.jobs])


def _add_actions(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.post(
        "/jobs/{job_id}/cancel",
        status_code=202,
        response_model=Job,
        responses=CONFLICT,
        tags=["jobs"],
    )
    def cancel_job(job_id: JobId, caller: Caller) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint."""
        visible(tracker, job_id, caller)
        return tracker.redactor.job(tracker.cancel(job_id, actor=caller.name))

    @router.post(
        "/jobs/{job_id}/retry",
        status_code=201,
        response_model=Job,
        responses=CONFLICT,
        tags=["jobs"],
    )
    def retry_job(job_id: JobId, caller: Caller, only_failed_items: bool = False) -> Job:
        """Queue a new job repeating a failed, partial or cancelled one."""
        visible(tracker, job_id, caller)
        job = tracker.retry(job_id, only_failed_items=only_failed_items, actor=caller.name)
        return tracker.redactor.job(job)
