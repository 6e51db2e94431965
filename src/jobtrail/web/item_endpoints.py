"""The failed-item endpoints of the REST API: record the failed items of an external job, and
read any visible job's failed items."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations evaluated.

from typing import Annotated, TypeAlias

from fastapi import APIRouter, Depends

from jobtrail.jobs import FailedItem, Job, NewFailedItem
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal, visible
from jobtrail.web.schemas import BODY, CONFLICT, FailedItemsRequest, JobId


def add_item_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add ``POST`` and ``GET /jobs/{id}/items`` to ``router``, callers admitted by ``gate``."""
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.post(
        "/jobs/{job_id}/items",
        status_code=201,
        response_model=Job,
        responses={**CONFLICT, **BODY},
        tags=["jobs"],
    )
    def report_failed_items(job_id: JobId, body: FailedItemsRequest, caller: Caller) -> Job:
        """Record failed items of an external job (redacted like everything stored), each
        counted into its ``items_failed`` and its history; 409 for a job that ended or that
        jobtrail runs itself, 422 when the counts would exceed ``items_total``."""
        visible(tracker, job_id, caller)
        items = [NewFailedItem(i.item_id, i.error_type, i.message) for i in body.items]
        return tracker.redactor.job(tracker.report_items(job_id, items, actor=caller.name))

    @router.get("/jobs/{job_id}/items", response_model=list[FailedItem], tags=["jobs"])
    def get_failed_items(job_id: JobId, caller: Caller) -> list[FailedItem]:
        """The items a job failed to process in its current attempt, in the order they
        failed."""
        visible(tracker, job_id, caller)
        return tracker.failed_items(job_id)
