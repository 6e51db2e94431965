"""``POST /jobs/bulk`` (cancel or retry many jobs at once) and ``GET /queues`` (each queue at
a glance), for the dashboard and for scripts."""

# No ``from __future__ import annotations``: FastAPI reads the caller dependency evaluated.

from typing import Annotated, Any, TypeAlias

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from jobtrail.bulk import MAX_BULK
from jobtrail.filters import MAX_LABEL_FILTERS, Filters
from jobtrail.jobs import BulkAction, BulkOutcome, QueueInfo
from jobtrail.states import Priority, Status
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal
from jobtrail.web.schemas import BODY, NO_NUL, ErrorResponse, LabelText, Moment, label_filters

IdText = Annotated[str, StringConstraints(pattern=r"^[\w.:-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]


class BulkFilter(BaseModel):
    """Which jobs a bulk action takes, as ``GET /jobs`` filters them (all of them apply)."""

    model_config = ConfigDict(extra="forbid")

    owner: Name | None = None
    status: list[Status] = Field(default_factory=list)
    kind: Name | None = None
    priority: Priority | None = None
    trigger: Name | None = None
    label: list[LabelText] = Field(default_factory=list, max_length=MAX_LABEL_FILTERS)
    q: Name | None = None
    created_from: Moment | None = None
    created_to: Moment | None = None

    def seen_by(self, caller: Principal) -> Filters:
        """These filters limited to what ``caller`` may touch."""
        return Filters(
            owner=caller.scope(self.owner),
            nothing=not caller.may_filter(self.owner),
            statuses=self.status,
            kind=self.kind,
            priority=self.priority,
            trigger=self.trigger,
            created_from=self.created_from,
            created_to=self.created_to,
            q=self.q,
            labels=label_filters(self.label),
        )


class BulkByIds(BaseModel):
    """An action on up to 1,000 jobs given by id."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction = Field(description="`cancel`, `retry` or `retry_failed_items`.")
    job_ids: list[IdText] = Field(min_length=1, max_length=1000)


class BulkByFilter(BaseModel):
    """An action on every job matching ``filter`` (up to 1,000 of them; more: 422)."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction = Field(description="`cancel`, `retry` or `retry_failed_items`.")
    filter: BulkFilter


BulkRequest = Annotated[
    BulkByIds | BulkByFilter,
    Field(description="An action and its jobs: `job_ids`, or every job matching `filter`."),
]


class Skipped(BaseModel):
    """A job a bulk action left alone, and why."""

    job_id: str
    reason: str


class BulkResponse(BaseModel):
    """What a bulk action did: every matched job is done or skipped."""

    action: BulkAction
    matched: int
    done: list[str] = Field(description="The jobs cancelled or retried.")
    retries: dict[str, str] = Field(description="For retries: each job's id → its new job's id.")
    skipped: list[Skipped]

    @classmethod
    def of(cls, outcome: BulkOutcome) -> "BulkResponse":
        """The response for ``outcome``."""
        return cls(
            action=outcome.action,
            matched=outcome.matched,
            done=list(outcome.done),
            retries=dict(outcome.retries),
            skipped=[Skipped(job_id=k, reason=v) for k, v in outcome.skipped.items()],
        )


TOO_MANY: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": f"Invalid input, or a filter matching more than {MAX_BULK} jobs",
    }
}


def add_bulk_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add ``POST /jobs/bulk`` and ``GET /queues`` to ``router``, callers admitted by ``gate``."""
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.post(
        "/jobs/bulk", response_model=BulkResponse, responses={**BODY, **TOO_MANY}, tags=["jobs"]
    )
    def bulk_action(body: BulkRequest, caller: Caller) -> BulkResponse:
        """Cancel, retry, or retry only the failed items of many jobs, one job at a time, each
        recorded in its history with this token's name. An owner token touches only its
        owner's jobs (another owner's id is skipped as "not found"); jobs the action does not
        apply to are skipped with the reason."""
        if isinstance(body, BulkByIds):
            ids, where = body.job_ids, None
        else:
            ids, where = None, body.filter.seen_by(caller)
        outcome = tracker.bulk(body.action, ids, where=where, owner=caller.owner, actor=caller.name)
        return BulkResponse.of(outcome)

    @router.get("/queues", response_model=list[QueueInfo], tags=["service"])
    def queues(caller: Caller) -> list[QueueInfo]:
        """Every queue with work or with jobs finished in the last hour: queued, waiting and
        running jobs, the age of the oldest queued one, finished and failed in the last hour,
        and the live workers consuming it (an owner token counts its own jobs only)."""
        return tracker.ops.queues(owner=caller.owner)
