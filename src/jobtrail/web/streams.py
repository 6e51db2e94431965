"""Live updates as Server-Sent Events and over a WebSocket, read from the store so every
process's writes show."""

# No ``from __future__ import annotations``: the endpoints' annotations name their router's
# caller dependency (a local alias), which FastAPI can only read evaluated.

from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeAlias

import anyio
from anyio import to_thread
from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import StreamingResponse

from jobtrail.exceptions import JobNotFound
from jobtrail.jobs import Filters, Job
from jobtrail.tracker import Tracker
from jobtrail.web.auth import COOKIE, Gate, Principal, visible
from jobtrail.web.schemas import JOB_JSON, JobFilter, JobId, NameQuery, StatusQuery, parse_time

KEEPALIVE_SECONDS = 15.0
OVERLAP = timedelta(seconds=2)
"""How far back each poll of ``/stream`` looks again, so a write committed late is not missed."""
PAGE = 500
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}
}
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(job: Job, event_id: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``job`` as JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: job\ndata: ".encode() + JOB_JSON.dump_json(job) + b"\n\n"


def _event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=_HEADERS)


def add_stream_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add ``GET /jobs/{id}/stream``, ``GET /stream`` and the ``/ws`` WebSocket to ``router``,
    their callers admitted through ``gate``."""
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    poll = tracker.settings.stream_poll_interval

    @router.get(
        "/jobs/{job_id}/stream",
        response_class=StreamingResponse,
        responses=_STREAM,
        tags=["streams"],
    )
    async def stream_job(job_id: JobId, request: Request, caller: Caller) -> StreamingResponse:
        """The job on every change; the stream ends after a terminal state."""
        job = await to_thread.run_sync(visible, tracker, job_id, caller)
        return _event_stream(_follow_job(tracker, job, request, poll))

    @router.get("/stream", response_class=StreamingResponse, responses=_STREAM, tags=["streams"])
    async def stream_jobs(
        request: Request,
        caller: Caller,
        requested: Annotated[JobFilter, Depends()],
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        """Every visible job change, filterable like ``/jobs``; resumes from ``Last-Event-ID``."""
        filters = requested.seen_by(caller)
        start = _resume_point(last_event_id) or tracker.now()
        return _event_stream(_follow_changes(tracker, filters, start, request, poll))

    @router.websocket("/ws")
    async def socket_jobs(
        websocket: WebSocket,
        owner: NameQuery = None,
        status: StatusQuery = None,
        kind: NameQuery = None,
        token: Annotated[str | None, Query(max_length=200)] = None,
    ) -> None:
        """The messages of ``/stream`` (job JSON per change) over a WebSocket. The token comes
        from the ``Authorization`` header, the ``token`` query parameter or the cookie."""
        bearer = websocket.headers.get("authorization", "")
        secret = bearer[7:] if bearer.lower().startswith("bearer ") else token
        try:
            caller = await to_thread.run_sync(
                gate.admit, websocket, secret or websocket.cookies.get(COOKIE)
            )
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail))
            return
        await websocket.accept()
        filters = JobFilter(owner=owner, status=status, kind=kind).seen_by(caller)
        with suppress(WebSocketDisconnect):
            async for batch in changes(tracker, filters, tracker.now(), poll):
                for job in batch:
                    await websocket.send_text(JOB_JSON.dump_json(job).decode())


def _resume_point(last_event_id: str | None) -> datetime | None:
    """Where ``Last-Event-ID`` says a stream left off; None unless it is a zoned time."""
    value = parse_time(last_event_id)
    return value if value is not None and value.tzinfo is not None else None


async def _follow_job(
    tracker: Tracker, job: Job, request: Request, poll: float
) -> AsyncIterator[bytes]:
    yield sse(tracker.redactor.job(job), job.updated_at.isoformat())
    last, quiet = job.updated_at, 0.0
    while not job.terminal:
        await anyio.sleep(poll)
        if await request.is_disconnected():
            return
        try:
            job = await to_thread.run_sync(tracker.get, job.id)
        except JobNotFound:
            return
        if job.updated_at != last:
            yield sse(tracker.redactor.job(job), job.updated_at.isoformat())
            last, quiet = job.updated_at, 0.0
        else:
            quiet += poll
            if quiet >= KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                quiet = 0.0


async def changes(
    tracker: Tracker, filters: Filters, start: datetime, poll: float
) -> AsyncIterator[list[Job]]:
    """Batches of changed jobs from ``start`` on, forever (an empty batch on a quiet poll).

    Each poll looks ``OVERLAP`` back and skips what it already sent, so a write that
    commits late (its ``updated_at`` is older than the cursor) is still seen.
    """
    cursor = start
    sent: dict[tuple[str, datetime], None] = {}
    while True:
        found = await to_thread.run_sync(tracker.changes, cursor - OVERLAP, filters, PAGE)
        fresh = [j for j in found if (j.id, j.updated_at) not in sent]
        for job in fresh:
            sent[(job.id, job.updated_at)] = None
            cursor = max(cursor, job.updated_at)
        for key in [k for k in sent if k[1] < cursor - OVERLAP]:
            del sent[key]
        yield [tracker.redactor.job(job) for job in fresh]
        if len(found) < PAGE:
            await anyio.sleep(poll)


async def _follow_changes(
    tracker: Tracker, filters: Filters, start: datetime, request: Request, poll: float
) -> AsyncIterator[bytes]:
    quiet = 0.0
    yield b": stream open\n\n"
    async for batch in changes(tracker, filters, start, poll):
        if await request.is_disconnected():
            return
        for job in batch:
            yield sse(job, job.updated_at.isoformat())
        quiet = 0.0 if batch else quiet + poll
        if quiet >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            quiet = 0.0
