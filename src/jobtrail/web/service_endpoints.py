"""The service endpoints of the REST API: statistics, schedules and the health check."""

# No ``from __future__ import annotations``: the endpoints' annotations name their router's
# caller dependency (a local alias), which FastAPI can only read evaluated.

from typing import Annotated, TypeAlias

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from jobtrail.exceptions import UnknownSchedule
from jobtrail.jobs import ScheduleInfo, Stats
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal
from jobtrail.web.errors import RETRY_AFTER_SECONDS
from jobtrail.web.schemas import (
    HealthResponse,
    LabelQuery,
    NameQuery,
    SubmitResponse,
    label_filters,
    submitted,
)


def add_service_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add ``/stats`` and the ``/schedules`` endpoints to ``router``, their callers admitted
    through ``gate``."""
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.get("/stats", response_model=Stats, tags=["stats"])
    def stats(
        caller: Caller,
        days: Annotated[int, Query(ge=1, le=3650)] = 30,
        owner: NameQuery = None,
        kind: NameQuery = None,
        label: LabelQuery = None,
        group_by: Annotated[
            str | None,
            Query(
                pattern=r"^(kind|owner|label:[^\x00]{1,100})$",
                description="`kind`, `owner` or `label:KEY`: the same figures per group in "
                "`groups` (the 50 largest; label groups count jobs not yet purged).",
                examples=["label:document_type"],
            ),
        ] = None,
    ) -> Stats:
        """Counts, success rate and durations of jobs created in the last ``days`` days."""
        if not caller.may_filter(owner):
            return Stats.empty(days)  # another owner's figures are simply not visible
        return tracker.stats(
            days=days,
            owner=caller.scope(owner),
            kind=kind,
            labels=label_filters(label),
            group_by=group_by,
        )

    @router.get("/schedules", response_model=list[ScheduleInfo], tags=["schedules"])
    def list_schedules(caller: Caller) -> list[ScheduleInfo]:
        """Every stored schedule with its next run and its last audited slots."""
        return tracker.ops.list_schedules(owner=caller.owner, recent=20)

    @router.post(
        "/schedules/{name}/run",
        status_code=202,
        response_model=SubmitResponse,
        tags=["schedules"],
    )
    def run_schedule(
        name: Annotated[str, Path(max_length=200)], request: Request, caller: Caller
    ) -> SubmitResponse:
        """Queue a job of the schedule now, outside its slots."""
        schedule = tracker.schedules.get(name)
        if schedule is None or not (caller.admin or schedule.owner == caller.owner):
            raise UnknownSchedule(name)
        return submitted(request, tracker.run_schedule(name, actor=caller.name))


def add_health_route(router: APIRouter, tracker: Tracker) -> None:
    """Add ``GET /health`` (no token) to ``router``."""

    @router.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "The store is unreachable"}},
        tags=["service"],
    )
    def health(response: Response) -> HealthResponse:
        """Liveness and a store round trip; needs no token."""
        try:
            revision = tracker.ops.health()
        except Exception:  # whatever the driver raises, the answer is "unavailable"
            response.status_code = 503
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return HealthResponse(status="degraded", store="unavailable")
        return HealthResponse(status="ok", store="ok", schema_revision=revision)
