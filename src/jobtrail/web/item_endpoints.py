"""The failed-item endpoints of the REST API: record the failed items of an external job, and
read any visible job's failed items a page at a time."""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations evaluated.

from typing import Annotated, TypeAlias

from fastapi import APIRouter, Depends, Query

from jobtrail.jobs import Job, NewFailedItem
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal, visible
from jobtrail.web.schemas import BODY, CONFLICT, FailedItemsRequest, FailedItemsResponse, JobId

After = Annotated[
    int,
    Query(ge=0, le=2**62, description="Only items after this item id (a page's `next_after`)."),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="The most items to answer.")]


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
        jobtrail runs itself, 422 when the counts would exceed ``items_total``.

        A job lists at most ``max_failed_items`` failed items (default 10,000): past them a
        report is still accepted and counted, but its items are not listed (nor recorded as
        ``item_failed`` events); the report that reaches the bound adds one ``log`` event
        saying so, and ``GET /jobs/{id}/items`` answers ``full: true``."""
        visible(tracker, job_id, caller)
        items = [NewFailedItem(i.item_id, i.error_type, i.message) for i in body.items]
        return tracker.redactor.job(tracker.report_items(job_id, items, actor=caller.name))

    @router.get("/jobs/{job_id}/items", response_model=FailedItemsResponse, tags=["jobs"])
    def get_failed_items(
        job_id: JobId, caller: Caller, after: After = 0, limit: Limit = 100
    ) -> FailedItemsResponse:
        """A page of the items a job failed to process in its current attempt, in the order
        they failed: at most ``limit`` (default 100, at most 1,000) after item id ``after``,
        with how many the job lists (``total``) and the ``after`` of the next page
        (``next_after``, null on the last). Pages stay stable while items are added."""
        visible(tracker, job_id, caller)
        return FailedItemsResponse.of(tracker.failed_item_page(job_id, after, limit))
