"""The shapes of the REST API: parameters, bodies, responses and documented errors (jobs,
events, stats and schedules reuse the core records)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

from jobtrail.filters import MAX_LABEL_FILTERS, Filters
from jobtrail.jobs import Event, FailedItem, ItemPage, Job
from jobtrail.redaction import RESERVED_KEY_PREFIXES, check_storable
from jobtrail.states import Priority, Status
from jobtrail.web.auth import Principal

INT32 = 2**31 - 1
NO_NUL = r"^[^\x00]*$"
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
"""Times outside these cannot be moved between zones or compared with a margin: refused."""
_TIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})?"
)


def _storable(value: Any) -> Any:
    """``value`` if both databases store it as given (``check_storable``: no NUL or lone
    surrogates, finite numbers, nesting at most 64 deep)."""
    check_storable(value)
    return value


Text = Annotated[str, StringConstraints(pattern=NO_NUL), AfterValidator(_storable)]
"""Text a database can store: no NUL characters, no lone surrogates."""
JOB_JSON = TypeAdapter(Job)
"""Jobs to and from JSON, for responses built by hand (status 200 on a reused key, streams)."""

JobId = Annotated[str, Path(pattern=r"^[\w.:-]{1,64}$", description="The job's id.")]
NameQuery = Annotated[str | None, Query(max_length=200, pattern=NO_NUL)]
"""An optional filter on a name (owner, kind) or a search text."""
TriggerQuery = Annotated[str | None, Query(max_length=50, pattern=NO_NUL)]
StatusQuery = Annotated[list[Status] | None, Query()]
"""Any of these statuses (repeat the parameter)."""
LabelText = Annotated[str, StringConstraints(pattern=r"^[^:\x00]{1,100}:[^\x00]{0,200}$")]
LabelQuery = Annotated[
    list[LabelText] | None,
    Query(
        max_length=MAX_LABEL_FILTERS,
        description="`KEY:VALUE` (split at the first colon): only jobs with this label; "
        f"repeat for several (at most {MAX_LABEL_FILTERS}), all must match. Numbers and "
        "booleans are written as in JSON.",
        examples=["document_type:pdf"],
    ),
]
"""Label filters, ``KEY:VALUE`` each."""


def label_filters(labels: list[str] | None) -> dict[str, str]:
    """``{key: value}`` of ``KEY:VALUE`` label filters (a key repeated: the last wins)."""
    return dict(label.split(":", 1) for label in labels or ())


@dataclass(frozen=True)
class JobFilter:
    """The filters of ``GET /jobs`` that the streams take too, as query parameters (a
    dependency: ``Annotated[JobFilter, Depends()]``)."""

    owner: NameQuery = None
    status: StatusQuery = None
    kind: NameQuery = None
    priority: Priority | None = None
    trigger: TriggerQuery = None
    label: LabelQuery = None

    def seen_by(self, caller: Principal) -> Filters:
        """These filters as ``caller`` may apply them: only its own jobs, and none at all when
        it asks for another owner's."""
        return Filters(
            owner=caller.scope(self.owner),
            nothing=not caller.may_filter(self.owner),
            statuses=self.status or (),
            kind=self.kind,
            priority=self.priority,
            trigger=self.trigger,
            labels=label_filters(self.label),
        )


Storable = Annotated[Any, AfterValidator(_storable)]
StorableObject = Annotated[dict[str, Any], AfterValidator(_storable)]


def _number(value: Any) -> Any:
    """Refuse what is not a JSON number (a boolean, a numeric string) before pydantic's
    conversions, which would read ``false`` as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return value


Count = Annotated[int, Field(ge=0, le=INT32), BeforeValidator(_number)]
"""A count: a JSON integer (``3.0`` is one; ``false``, ``"3"`` and ``3.5`` are not)."""


def _in_range(value: datetime | None) -> datetime | None:
    """``value`` (naive: UTC) in UTC, if it lies between ``EARLIEST`` and ``LATEST``."""
    if value is None:
        return None
    try:
        moved = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        moved = None
    if moved is None or not EARLIEST <= moved <= LATEST:
        raise ValueError(f"time must lie between {EARLIEST.date()} and {LATEST.date()} (UTC)")
    return moved


def _time_text(value: Any) -> Any:
    """Times as ISO 8601 date and time text only (not a number, a boolean or a bare date)."""
    if value is None or (isinstance(value, str) and _TIME_TEXT.fullmatch(value)):
        return value
    raise ValueError("expected an ISO 8601 date and time, e.g. 2030-01-31T09:00:00Z")


Moment = Annotated[datetime, BeforeValidator(_time_text), AfterValidator(_in_range)]
"""A time: ISO 8601 text only, in range, moved to UTC (naive: taken as UTC)."""
TimeQuery = Annotated[Moment | None, Query()]
"""An optional time filter."""


def _own_key(key: str | None) -> str | None:
    if key is not None and key.startswith(RESERVED_KEY_PREFIXES):
        raise ValueError(f"keys starting with {' or '.join(RESERVED_KEY_PREFIXES)} are reserved")
    return key


Key = Annotated[Text | None, Field(min_length=1, max_length=255), AfterValidator(_own_key)]
"""A caller's idempotency key (the prefixes jobtrail makes keys with are reserved)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(_Body):
    """A job to queue for a registered kind."""

    kind: Text = Field(
        min_length=1,
        max_length=200,
        description="A kind registered on this server (e.g. `listing_sync` in the guide).",
    )
    payload: StorableObject = Field(
        default_factory=dict,
        description='The handler\'s arguments by name (e.g. `{"account_id": "A1"}`).',
    )
    owner: Text | None = Field(None, min_length=1, max_length=200)
    key: Key = None
    priority: Priority | None = None
    trigger: Text = Field("api", min_length=1, max_length=50)
    run_after: Moment | None = None
    labels: StorableObject = Field(default_factory=dict)


class SubmitResponse(BaseModel):
    """Where to follow a submitted job."""

    job_id: str
    status: Status
    status_url: str


def submitted(request: Request, job: Job) -> SubmitResponse:
    """The answer to queueing ``job``: its status and the URL of ``GET /jobs/{id}``."""
    url = str(request.url_for("get_job", job_id=job.id))
    return SubmitResponse(job_id=job.id, status=job.status, status_url=url)


class ExternalJobRequest(_Body):
    """A tracking-only job for work that runs elsewhere and reports here."""

    kind: Text = Field(min_length=1, max_length=200, examples=["nightly_export"])
    owner: Text | None = Field(None, min_length=1, max_length=200)
    key: Key = None
    trigger: Text = Field("external", min_length=1, max_length=50)
    status: Literal["queued", "waiting", "running"] = "running"
    priority: Priority = Priority.NORMAL
    payload: StorableObject = Field(default_factory=dict)
    labels: StorableObject = Field(default_factory=dict)
    items_total: Count | None = None
    message: Text | None = Field(None, max_length=4000)
    report_timeout: float | None = Field(
        None,
        gt=0,
        le=366 * 86400,
        strict=True,
        allow_inf_nan=False,
        description="Seconds without a report (PATCH) after which the running or waiting job "
        'ends `failed` ("no report since …"); left out, `heartbeat_timeout` applies '
        '("worker lost").',
    )


class PatchJobRequest(_Body):
    """Progress and/or a status change reported by the code running an external job."""

    progress: float | None = Field(None, ge=0, le=100, strict=True, allow_inf_nan=False)
    message: Text | None = Field(None, max_length=4000)
    items_total: Count | None = None
    items_succeeded: Count | None = None
    items_failed: Count | None = None
    items_done: Count | None = Field(
        None, description="Items processed so far: sets items_succeeded to this − items_failed."
    )
    advance: Count | None = Field(None, description="Items that succeeded since the last report.")
    succeeded_delta: Count | None = Field(None, description="Added to items_succeeded.")
    failed_delta: Count | None = Field(None, description="Added to items_failed.")
    progress_data: StorableObject | None = None
    status: Status | None = None
    result: Storable = None
    error_message: Text | None = Field(None, max_length=4000)
    error_details: Storable = None


class FailedItemReport(_Body):
    """One item the code running an external job failed to process."""

    item_id: Text = Field(min_length=1, max_length=500, examples=["listing-42"])
    error_type: Text = Field("Error", min_length=1, max_length=200, examples=["TimeoutError"])
    message: Text = Field("", max_length=4096, examples=["upstream timed out after 30 s"])


class FailedItemsRequest(_Body):
    """Failed items of an external job, each counted into its ``items_failed`` and listed
    while the job lists fewer than ``max_failed_items`` (default 10,000); past that they are
    counted, not listed, and the report that reaches the bound adds a ``log`` event."""

    items: list[FailedItemReport] = Field(min_length=1, max_length=1000)


class ProgressResponse(BaseModel):
    """The live part of a job, for frequent polling."""

    job_id: str
    status: Status
    progress: float
    stage: str | None
    wait_reason: str | None
    message: str | None
    items_total: int | None
    items_done: int | None
    items_succeeded: int | None
    items_failed: int | None
    eta_seconds: float | None
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> ProgressResponse:
        """The live part of ``job``."""
        return cls(
            job_id=job.id,
            status=job.status,
            progress=job.progress,
            stage=job.stage,
            wait_reason=job.wait_reason,
            message=job.message,
            items_total=job.items_total,
            items_done=job.items_done,
            items_succeeded=job.items_succeeded,
            items_failed=job.items_failed,
            eta_seconds=job.eta_seconds,
            updated_at=job.updated_at,
        )


class EventsResponse(BaseModel):
    """A page of a job's history; pass ``next_after`` as ``after`` for the next page."""

    events: list[Event]
    next_after: int


class FailedItemsResponse(BaseModel):
    """A page of a job's failed items in the order they failed (a page object since
    2026-12: the answer used to be a bare list of every item). Pass ``next_after`` as
    ``after`` for the next page."""

    items: list[FailedItem]
    total: int = Field(
        description="Failed items the job lists, all pages together: at most "
        "`max_failed_items` a run. The job's `items_failed` counts every failed item."
    )
    limit: int = Field(description="The most items a page holds, as asked.")
    next_after: int | None = Field(
        description="The `after` of the next page; null when this page reached the last item "
        "listed so far (items listed later have larger ids: ask again with the last id)."
    )
    full: bool = Field(
        description="The job lists `max_failed_items` items: failed items past them were "
        "counted in `items_failed` but not listed."
    )

    @classmethod
    def of(cls, page: ItemPage) -> FailedItemsResponse:
        """The answer for ``page``."""
        return cls(
            items=list(page.items),
            total=page.total,
            limit=page.limit,
            next_after=page.next_after,
            full=page.full,
        )


class HealthResponse(BaseModel):
    """Liveness and a store round trip."""

    status: str = Field(examples=["ok"])
    store: str = Field(examples=["ok"])
    schema_revision: str | None = None


class ErrorResponse(BaseModel):
    """Every error: ``{"detail": ...}``."""

    detail: Any = Field(examples=["job 'x' not found"])


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked token"},
    403: {"model": ErrorResponse, "description": "Not allowed for this token's owner"},
    404: {"model": ErrorResponse, "description": "No such job, or not visible to this token"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After"},
    503: {"model": ErrorResponse, "description": "The store is unavailable"},
}
"""The errors every endpoint behind a token may answer."""
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


def utc_time(text: str | None, *, naive: bool = True) -> datetime | None:
    """``text`` as an ISO 8601 time in UTC (naive ones taken as UTC, unless ``naive`` is
    False), or None if empty, not one, or out of range."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None and not naive:
            return None
        return _in_range(value)
    except ValueError:
        return None
