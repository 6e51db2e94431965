"""Live updates as Server-Sent Events, read from the store so every process's writes show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from anyio import to_thread
from fastapi import (
    APIRouter,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from jobtrail.exceptions import JobNotFound
from jobtrail.jobs import Filters, Job, Priority, Status
from jobtrail.web.auth import COOKIE, Caller, Gate, Principal
from jobtrail.web.schemas import NO_NUL

if TYPE_CHECKING:
    from jobtrail.tracker import Tracker

KEEPALIVE_SECONDS = 15.0
OVERLAP = timedelta(seconds=2)
"""How far back each poll of ``/stream`` looks again, so a write committed late is not missed."""
PAGE = 500
_job_json = TypeAdapter(Job)
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}
}
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(job: Job, event_id: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``job`` as JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: job\ndata: ".encode() + _job_json.dump_json(job) + b"\n\n"


class StreamEndpoints:
    """The SSE endpoints, mixed into the API class (which provides ``tracker`` and
    ``visible``/``present``)."""

    tracker: Tracker
    gate: Gate

    def visible(self, job_id: str, caller: Principal) -> Job:
        raise NotImplementedError

    def present(self, job: Job) -> Job:
        raise NotImplementedError

    async def stream_job(
        self,
        job_id: Annotated[str, Path(pattern=r"^[\w.:-]{1,64}$")],
        request: Request,
        caller: Caller,
    ) -> StreamingResponse:
        """The job on every change; the stream ends after a terminal state."""
        job = await to_thread.run_sync(self.visible, job_id, caller)
        poll = self.tracker.settings.stream_poll_interval
        return StreamingResponse(
            _follow_job(self, job, request, poll), media_type="text/event-stream", headers=_HEADERS
        )

    async def stream_jobs(
        self,
        request: Request,
        caller: Caller,
        owner: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        status: Annotated[list[Status] | None, Query()] = None,
        kind: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        priority: Priority | None = None,
        trigger: Annotated[str | None, Query(max_length=50, pattern=NO_NUL)] = None,
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        """Every visible job change, filterable like ``/jobs``; resumes from ``Last-Event-ID``."""
        filters = Filters(
            owner=caller.owner or owner,
            nothing=not caller.may_filter(owner),
            statuses=status or (),
            kind=kind,
            priority=priority,
            trigger=trigger,
        )
        start = _resume_point(last_event_id) or self.tracker.store.clock()
        poll = self.tracker.settings.stream_poll_interval
        return StreamingResponse(
            _follow_changes(self, filters, start, request, poll),
            media_type="text/event-stream",
            headers=_HEADERS,
        )

    async def socket_jobs(
        self,
        websocket: WebSocket,
        owner: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        status: Annotated[list[Status] | None, Query()] = None,
        kind: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        token: Annotated[str | None, Query(max_length=200)] = None,
    ) -> None:
        """The messages of ``/stream`` (job JSON per change) over a WebSocket. The token comes
        from the ``Authorization`` header, the ``token`` query parameter or the cookie."""
        bearer = websocket.headers.get("authorization", "")
        secret = bearer[7:] if bearer.lower().startswith("bearer ") else token
        try:
            caller = await to_thread.run_sync(
                self.gate.admit, websocket, secret or websocket.cookies.get(COOKIE)
            )
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail))
            return
        await websocket.accept()
        filters = Filters(
            owner=caller.owner or owner,
            nothing=not caller.may_filter(owner),
            statuses=status or (),
            kind=kind,
        )
        poll = self.tracker.settings.stream_poll_interval
        with suppress(WebSocketDisconnect):
            async for batch in changes(self, filters, self.tracker.store.clock(), poll):
                for job in batch:
                    await websocket.send_text(_job_json.dump_json(job).decode())


def add_stream_routes(router: APIRouter, api: StreamEndpoints) -> None:
    """Add ``GET /jobs/{id}/stream`` and ``GET /stream`` to ``router``."""
    common: dict[str, Any] = {
        "response_class": StreamingResponse,
        "responses": _STREAM,
        "tags": ["streams"],
    }
    router.add_api_route("/jobs/{job_id}/stream", api.stream_job, methods=["GET"], **common)
    router.add_api_route("/stream", api.stream_jobs, methods=["GET"], **common)
    router.add_api_websocket_route("/ws", api.socket_jobs)


def _resume_point(last_event_id: str | None) -> datetime | None:
    if not last_event_id:
        return None
    try:
        value = datetime.fromisoformat(last_event_id)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


async def _follow_job(
    api: StreamEndpoints, job: Job, request: Request, poll: float
) -> AsyncIterator[bytes]:
    yield sse(api.present(job), job.updated_at.isoformat())
    last, quiet = job.updated_at, 0.0
    while not job.terminal:
        await anyio.sleep(poll)
        if await request.is_disconnected():
            return
        try:
            job = await to_thread.run_sync(api.tracker.get, job.id)
        except JobNotFound:
            return
        if job.updated_at != last:
            yield sse(api.present(job), job.updated_at.isoformat())
            last, quiet = job.updated_at, 0.0
        else:
            quiet += poll
            if quiet >= KEEPALIVE_SECONDS:
                yield b": keepalive\n\n"
                quiet = 0.0


async def changes(
    api: StreamEndpoints, filters: Filters, start: datetime, poll: float
) -> AsyncIterator[list[Job]]:
    """Batches of changed jobs from ``start`` on, forever (an empty batch on a quiet poll).

    Each poll looks ``OVERLAP`` back and skips what it already sent, so a write that
    commits late (its ``updated_at`` is older than the cursor) is still seen.
    """
    cursor = start
    sent: dict[tuple[str, datetime], None] = {}
    while True:
        found = await to_thread.run_sync(api.tracker.store.changes, cursor - OVERLAP, filters, PAGE)
        fresh = [j for j in found if (j.id, j.updated_at) not in sent]
        for job in fresh:
            sent[(job.id, job.updated_at)] = None
            cursor = max(cursor, job.updated_at)
        for key in [k for k in sent if k[1] < cursor - OVERLAP]:
            del sent[key]
        yield [api.present(job) for job in fresh]
        if len(found) < PAGE:
            await anyio.sleep(poll)


async def _follow_changes(
    api: StreamEndpoints, filters: Filters, start: datetime, request: Request, poll: float
) -> AsyncIterator[bytes]:
    quiet = 0.0
    yield b": stream open\n\n"
    async for batch in changes(api, filters, start, poll):
        if await request.is_disconnected():
            return
        for job in batch:
            yield sse(job, job.updated_at.isoformat())
        quiet = 0.0 if batch else quiet + poll
        if quiet >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            quiet = 0.0
