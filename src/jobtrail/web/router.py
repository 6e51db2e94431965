"""The REST API (``/api/v1``): submit, report, read, cancel, retry, stats, schedules, health."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from jobtrail.exceptions import JobNotFound, KeyInUse, NotAllowed, UnknownSchedule
from jobtrail.jobs import Job, Page, Priority, Stats, Status
from jobtrail.store.records import NewJob
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Authenticate, Caller, Gate, Principal, RateLimit, token_auth
from jobtrail.web.errors import JobtrailRoute
from jobtrail.web.metrics import add_metrics_route
from jobtrail.web.schemas import (
    NO_NUL,
    ErrorResponse,
    EventsResponse,
    ExternalJobRequest,
    HealthResponse,
    PatchJobRequest,
    ProgressResponse,
    ScheduleOut,
    ScheduleRunOut,
    SubmitRequest,
    SubmitResponse,
)
from jobtrail.web.streams import StreamEndpoints, add_stream_routes

JobId = Annotated[str, Path(pattern=r"^[\w.:-]{1,64}$", description="The job's id.")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked token"},
    403: {"model": ErrorResponse, "description": "Not allowed for this token's owner"},
    404: {"model": ErrorResponse, "description": "No such job, or not visible to this token"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After"},
    503: {"model": ErrorResponse, "description": "The store is unavailable"},
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "Not allowed in the job's current state"}
}
BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body could not be read (e.g. not UTF-8)"},
    413: {"model": ErrorResponse, "description": "The body is larger than allowed"},
}
KEY_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The key names another owner's job"}
}


class JobsApi(StreamEndpoints):
    """The endpoints, as methods bound to one tracker and the gate callers pass through."""

    def __init__(self, tracker: Tracker, gate: Gate) -> None:
        self.tracker = tracker
        self.gate = gate

    def present(self, job: Job) -> Job:
        """A job as the API shows it: secrets in its payload masked."""
        return replace(job, payload=self.tracker.redactor.json(job.payload))

    def visible(self, job_id: str, caller: Principal) -> Job:
        """The job if the caller may see it; otherwise exactly as if it did not exist."""
        job = self.tracker.get(job_id)
        if not caller.can_see(job):
            raise JobNotFound(job_id)
        return job

    def owner_for(self, requested: str | None, caller: Principal) -> str | None:
        """The owner a new job gets: an owner token can only create jobs for its owner."""
        if caller.owner is not None and requested not in (None, caller.owner):
            raise NotAllowed(f"this token cannot create jobs for owner {requested!r}")
        return caller.owner if caller.owner is not None else requested

    # -- endpoints (registered by create_router) ---------------------------------------

    def submit_job(self, body: SubmitRequest, request: Request, caller: Caller) -> Any:
        """Queue a job of a registered kind; returns at once with where to follow it."""
        job, created = self.tracker.submit_or_get(
            body.kind,
            body.payload,
            owner=self.owner_for(body.owner, caller),
            key=body.key,
            priority=body.priority,
            trigger=body.trigger,
            run_after=_aware(body.run_after),
            labels=body.labels,
            actor=caller.name,
        )
        if not created:
            if not caller.can_see(job):
                raise KeyInUse(body.key or "")
            return JSONResponse(_dump(self.present(job)), status_code=200)
        url = str(request.url_for("get_job", job_id=job.id))
        return SubmitResponse(job_id=job.id, status=job.status, status_url=url)

    def create_external_job(self, body: ExternalJobRequest, caller: Caller) -> Any:
        """Create a tracking-only job for work that runs elsewhere and reports with PATCH;
        200 with the existing job when its ``key`` exists."""
        new = NewJob(
            kind=body.kind,
            payload=body.payload,
            key=body.key,
            owner=self.owner_for(body.owner, caller),
            trigger=body.trigger,
            priority=body.priority,
            labels=body.labels,
            status=Status(body.status),
            items_total=body.items_total,
            message=body.message,
        )
        job, created = self.tracker.store.add_or_get([new], actor=caller.name)[0]
        if created:
            return self.present(job)
        if not caller.can_see(job):
            raise KeyInUse(body.key or "")
        return JSONResponse(_dump(self.present(job)), status_code=200)

    def report_job(self, job_id: JobId, body: PatchJobRequest, caller: Caller) -> Job:
        """Report progress and/or a new status of an external job."""
        job = self.visible(job_id, caller)
        values = body.model_dump(exclude_unset=True, exclude={"status"})
        if "items_succeeded" in values or "items_failed" in values:
            succeeded = values.get("items_succeeded", job.items_succeeded) or 0
            failed = values.get("items_failed", job.items_failed) or 0
            values["items_done"] = succeeded + failed
            total = values.get("items_total", job.items_total)
            if "progress" not in values and total:
                values["progress"] = min(values["items_done"] * 100.0 / total, 100.0)
        if body.error_details is not None:
            values["error_details"] = self.tracker.redactor.json(body.error_details)
        job = self.tracker.store.report(job_id, values, body.status, actor=caller.name)
        return self.present(job)

    def active_jobs(self, caller: Caller) -> list[Job]:
        """Queued, waiting and running jobs, newest first."""
        return [self.present(j) for j in self.tracker.active(owner=caller.owner)]

    def get_job(self, job_id: JobId, caller: Caller) -> Job:
        """One job's full record."""
        return self.present(self.visible(job_id, caller))

    def get_progress(self, job_id: JobId, caller: Caller) -> ProgressResponse:
        """The live part of a job, cheap to poll."""
        job = self.visible(job_id, caller)
        return ProgressResponse(
            job_id=job.id,
            status=job.status,
            progress=job.progress,
            message=job.message,
            items_total=job.items_total,
            items_done=job.items_done,
            items_succeeded=job.items_succeeded,
            items_failed=job.items_failed,
            eta_seconds=job.eta_seconds,
            updated_at=job.updated_at,
        )

    def get_events(
        self,
        job_id: JobId,
        caller: Caller,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventsResponse:
        """A job's history, oldest first; page with ``after``."""
        self.visible(job_id, caller)
        events = self.tracker.events(job_id, after=after, limit=limit)
        return EventsResponse(events=events, next_after=events[-1].id if events else after)

    def list_jobs(
        self,
        caller: Caller,
        owner: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        status: Annotated[list[Status] | None, Query()] = None,
        kind: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        priority: Priority | None = None,
        trigger: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Page:
        """Jobs matching every filter, newest first, with the exact total count."""
        if not caller.may_filter(owner):
            return Page(jobs=[], total_count=0, limit=limit, offset=offset)
        page = self.tracker.list(
            owner=caller.owner or owner,
            status=status,
            kind=kind,
            priority=priority,
            trigger=trigger,
            created_from=_aware(created_from),
            created_to=_aware(created_to),
            q=q,
            limit=limit,
            offset=offset,
        )
        return replace(page, jobs=[self.present(j) for j in page.jobs])

    def cancel_job(self, job_id: JobId, caller: Caller) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint."""
        self.visible(job_id, caller)
        return self.present(self.tracker.cancel(job_id, actor=caller.name))

    def retry_job(self, job_id: JobId, caller: Caller, only_failed_items: bool = False) -> Job:
        """Queue a new job repeating a failed, partial or cancelled one."""
        self.visible(job_id, caller)
        job = self.tracker.retry(job_id, only_failed_items=only_failed_items, actor=caller.name)
        return self.present(job)

    def stats(
        self,
        caller: Caller,
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
        owner: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        kind: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    ) -> Stats:
        """Counts, success rate and durations of jobs created in the last ``days`` days."""
        if not caller.may_filter(owner):
            return Stats.empty(days)  # another owner's figures are simply not visible
        return self.tracker.stats(days=days, owner=caller.owner or owner, kind=kind)

    def list_schedules(self, caller: Caller) -> list[ScheduleOut]:
        """Every stored schedule with its next run and its last audited slots."""
        return [
            ScheduleOut(
                name=s.name,
                kind=s.kind,
                cron=s.cron,
                every_seconds=s.every_seconds,
                owner=s.owner,
                last_slot_at=s.last_slot_at,
                next_run_at=s.next_run_at,
                recent_runs=[
                    ScheduleRunOut(**vars(r)) for r in self.tracker.store.schedule_runs(s.name, 20)
                ],
            )
            for s in self.tracker.store.list_schedules()
            if caller.admin or s.owner == caller.owner
        ]

    def run_schedule(
        self, name: Annotated[str, Path(max_length=200)], request: Request, caller: Caller
    ) -> SubmitResponse:
        """Queue a job of the schedule now, outside its slots."""
        schedule = self.tracker.schedules.get(name)
        if schedule is None or not (caller.admin or schedule.owner == caller.owner):
            raise UnknownSchedule(name)
        job = self.tracker.run_schedule(name, actor=caller.name)
        url = str(request.url_for("get_job", job_id=job.id))
        return SubmitResponse(job_id=job.id, status=job.status, status_url=url)

    def health(self, response: Response) -> HealthResponse:
        """Liveness and a store round trip; needs no token."""
        from jobtrail.store.schema import current_revision

        try:
            revision = current_revision(self.tracker.store.engine)
        except Exception:
            response.status_code = 503
            return HealthResponse(status="degraded", store="unavailable")
        return HealthResponse(status="ok", store="ok", schema_revision=revision)


def create_router(
    tracker: Tracker,
    *,
    auth: Authenticate | None = None,
    rate_limit: str | None = None,
) -> APIRouter:
    """The REST API for ``tracker``, to mount under ``/api/v1`` in any FastAPI app.

    ``auth(request, bearer_token)`` returns the caller's ``Principal`` or raises a 401
    ``HTTPException`` (default: tokens from ``jobtrail tokens create``), so a host app can
    plug in its own users. ``/health`` and ``/metrics`` need no token.
    """
    limit = RateLimit(rate_limit or tracker.settings.rate_limit)
    api = JobsApi(tracker, Gate(auth or token_auth(tracker), limit))
    protected = APIRouter(responses=ERRORS, route_class=JobtrailRoute)
    public = APIRouter(route_class=JobtrailRoute)
    protected.add_api_route(
        "/jobs",
        api.submit_job,
        methods=["POST"],
        status_code=202,
        response_model=SubmitResponse,
        responses={
            200: {"model": Job, "description": "The job that already has this key"},
            **BODY,
            **KEY_TAKEN,
        },
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs/external",
        api.create_external_job,
        methods=["POST"],
        status_code=201,
        response_model=Job,
        responses={
            200: {"model": Job, "description": "The job that already has this key"},
            **BODY,
            **KEY_TAKEN,
        },
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs/{job_id}",
        api.report_job,
        methods=["PATCH"],
        response_model=Job,
        responses={**CONFLICT, **BODY},
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs/active", api.active_jobs, methods=["GET"], response_model=list[Job], tags=["jobs"]
    )
    protected.add_api_route(
        "/jobs/{job_id}", api.get_job, methods=["GET"], response_model=Job, tags=["jobs"]
    )
    protected.add_api_route(
        "/jobs/{job_id}/progress",
        api.get_progress,
        methods=["GET"],
        response_model=ProgressResponse,
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs/{job_id}/events",
        api.get_events,
        methods=["GET"],
        response_model=EventsResponse,
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs", api.list_jobs, methods=["GET"], response_model=Page, tags=["jobs"]
    )
    protected.add_api_route(
        "/jobs/{job_id}/cancel",
        api.cancel_job,
        methods=["POST"],
        status_code=202,
        response_model=Job,
        responses=CONFLICT,
        tags=["jobs"],
    )
    protected.add_api_route(
        "/jobs/{job_id}/retry",
        api.retry_job,
        methods=["POST"],
        status_code=201,
        response_model=Job,
        responses=CONFLICT,
        tags=["jobs"],
    )
    protected.add_api_route(
        "/stats", api.stats, methods=["GET"], response_model=Stats, tags=["stats"]
    )
    protected.add_api_route(
        "/schedules",
        api.list_schedules,
        methods=["GET"],
        response_model=list[ScheduleOut],
        tags=["schedules"],
    )
    protected.add_api_route(
        "/schedules/{name}/run",
        api.run_schedule,
        methods=["POST"],
        status_code=202,
        response_model=SubmitResponse,
        tags=["schedules"],
    )
    public.add_api_route(
        "/health",
        api.health,
        methods=["GET"],
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "The store is unreachable"}},
        tags=["service"],
    )
    add_stream_routes(protected, api)
    add_metrics_route(public, tracker)
    router = APIRouter()
    router.include_router(protected)
    router.include_router(public)
    return router


def _aware(value: datetime | None) -> datetime | None:
    """Query timestamps without a zone are taken as UTC."""
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _dump(job: Job) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(Job).dump_python(job, mode="json")
