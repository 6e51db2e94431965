"""Live updates as Server-Sent Events and over a WebSocket, read from the store so every
process's writes show."""

# No ``from __future__ import annotations``: the endpoints' annotations name their router's
# caller dependency (a local alias), which FastAPI can only read evaluated.

import time
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

from jobtrail.exceptions import JobNotFound, StoreError
from jobtrail.filters import Filters
from jobtrail.jobs import Job
from jobtrail.tracker import Tracker
from jobtrail.web.auth import COOKIE, Admission, Gate, visible
from jobtrail.web.open_streams import HeldStream, OpenStreams, Recheck
from jobtrail.web.schemas import (
    JOB_JSON,
    JobFilter,
    JobId,
    LabelQuery,
    NameQuery,
    StatusQuery,
    utc_time,
)

KEEPALIVE_SECONDS = 15.0
OVERLAP = timedelta(seconds=2)
"""How far back each poll of ``/stream`` looks again, so a write committed late is not missed."""
SETTLE = 0.005
"""How long a stream waits after a commit before it reads, gathering the commits of a burst
(a running job's progress) into one read."""
PAGE = 500
_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}
}


def sse(job: Job, event_id: str | None = None) -> bytes:
    """One Server-Sent Event carrying ``job`` as JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: job\ndata: ".encode() + JOB_JSON.dump_json(job) + b"\n\n"


def add_stream_routes(
    router: APIRouter, tracker: Tracker, gate: Gate, streams: OpenStreams
) -> None:
    """Add ``GET /jobs/{id}/stream``, ``GET /stream`` and the ``/ws`` WebSocket to ``router``,
    their callers admitted through ``gate`` and their streams counted in ``streams``."""
    Admitted: TypeAlias = Annotated[Admission, Depends(gate.admission)]
    poll = tracker.settings.stream_poll_interval
    interval = tracker.settings.stream_auth_interval

    @router.get(
        "/jobs/{job_id}/stream",
        response_class=StreamingResponse,
        responses=_STREAM,
        tags=["streams"],
    )
    async def stream_job(job_id: JobId, request: Request, admitted: Admitted) -> StreamingResponse:
        """The job on every change; the stream ends after a terminal state."""
        job = await to_thread.run_sync(visible, tracker, job_id, admitted.caller)
        recheck = Recheck(gate, request, admitted, interval)
        events = _follow_job(tracker, job, request, poll, recheck)
        return HeldStream(events, streams.reserve(admitted.key))

    @router.get("/stream", response_class=StreamingResponse, responses=_STREAM, tags=["streams"])
    async def stream_jobs(
        request: Request,
        admitted: Admitted,
        requested: Annotated[JobFilter, Depends()],
        last_event_id: Annotated[str | None, Header(max_length=64)] = None,
    ) -> StreamingResponse:
        """Every visible job change, filterable like ``/jobs``; resumes from ``Last-Event-ID``."""
        filters = requested.seen_by(admitted.caller)
        start = utc_time(last_event_id, naive=False) or tracker.now()
        recheck = Recheck(gate, request, admitted, interval)
        events = _follow_changes(tracker, filters, start, request, poll, recheck)
        return HeldStream(events, streams.reserve(admitted.key))

    @router.websocket("/ws")
    async def socket_jobs(
        websocket: WebSocket,
        owner: NameQuery = None,
        status: StatusQuery = None,
        kind: NameQuery = None,
        label: LabelQuery = None,
        token: Annotated[str | None, Query(max_length=200)] = None,
    ) -> None:
        """The messages of ``/stream`` (job JSON per change) over a WebSocket. The token comes
        from the ``Authorization`` header, the ``token`` query parameter or the cookie (then
        the page must be of an allowed origin)."""
        try:
            admitted = await _admit_socket(gate, websocket, token)
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail))
            return
        await websocket.accept()
        try:
            slot = streams.reserve(admitted.key)
        except HTTPException as exc:
            await websocket.close(code=4000 + exc.status_code, reason=str(exc.detail))
            return
        requested = JobFilter(owner=owner, status=status, kind=kind, label=label)
        filters = requested.seen_by(admitted.caller)
        try:
            session = _Session(websocket, Recheck(gate, websocket, admitted, interval))
            await session.run(changes(tracker, filters, tracker.now(), poll))
        finally:
            slot.release()


async def _admit_socket(gate: Gate, websocket: WebSocket, token: str | None) -> Admission:
    """The caller of a WebSocket: from a bearer header, the ``token`` parameter, or the
    dashboard's cookie (which only a page of an allowed origin may use)."""
    bearer = websocket.headers.get("authorization", "")
    secret = bearer[7:] if bearer.lower().startswith("bearer ") else token
    if not secret:
        secret = websocket.cookies.get(COOKIE)
        if secret is not None:
            gate.origins.check(websocket)
    return await to_thread.run_sync(gate.admit, websocket, secret)


class _Session:
    """One accepted WebSocket: sends batches of changes while a second task waits for the
    client to go, so a client that leaves ends the session even when nothing is sent."""

    def __init__(self, websocket: WebSocket, recheck: Recheck) -> None:
        self.websocket = websocket
        self.recheck = recheck

    async def run(self, batches: AsyncIterator[list[Job]]) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._until_gone, group.cancel_scope)
            with suppress(WebSocketDisconnect):
                await self._send(batches)
            group.cancel_scope.cancel()

    async def _until_gone(self, scope: anyio.CancelScope) -> None:
        with suppress(WebSocketDisconnect):
            while (await self.websocket.receive())["type"] != "websocket.disconnect":
                pass  # what a client sends is ignored
        scope.cancel()

    async def _send(self, batches: AsyncIterator[list[Job]]) -> None:
        async for batch in batches:
            if not await self.recheck.allowed():
                await self.websocket.close(code=4401, reason="token revoked")
                return
            for job in batch:
                await self.websocket.send_text(JOB_JSON.dump_json(job).decode())


async def _follow_job(
    tracker: Tracker, job: Job, request: Request, poll: float, recheck: Recheck
) -> AsyncIterator[bytes]:
    yield sse(tracker.redactor.job(job), job.updated_at.isoformat())
    last, spoke = job.updated_at, time.monotonic()
    seen = tracker.ops.changes_seen
    while not job.terminal:
        seen = await _next_change(tracker, seen, poll)
        if await request.is_disconnected() or not await recheck.allowed():
            return
        try:
            job = await to_thread.run_sync(tracker.get, job.id)
        except JobNotFound:
            return
        except StoreError as exc:  # the store is away: the stream waits and reads again
            tracker.ops.note_failure(exc, "live stream")
            continue
        if job.updated_at != last:
            yield sse(tracker.redactor.job(job), job.updated_at.isoformat())
            last, spoke = job.updated_at, time.monotonic()
        elif time.monotonic() - spoke >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            spoke = time.monotonic()


async def changes(
    tracker: Tracker, filters: Filters, start: datetime, poll: float
) -> AsyncIterator[list[Job]]:
    """Batches of changed jobs from ``start`` on, forever (an empty batch on a quiet poll).

    Each round reads the keys (``updated_at``, id) of every change since ``OVERLAP`` before
    the cursor, a page at a time (each page starts past the last key of the one before), and
    reads whole only the jobs it has not sent: a write that commits late (its ``updated_at``
    is older than the cursor) is still seen, a burst of any size arrives whole and in order,
    and looking back again costs two columns a job. Then it waits for the next commit.
    """
    feed = _Feed(tracker, filters, start)
    seen = tracker.ops.changes_seen
    while True:
        try:
            async for batch in feed.round():
                yield batch
        except StoreError as exc:  # the store is away: the stream waits and reads again
            tracker.ops.note_failure(exc, "live stream")
            yield []
        feed.forget_old()
        seen = await _next_change(tracker, seen, poll)


class _Feed:
    """What one stream has sent: the changes of the last ``OVERLAP`` (to skip when read
    again) and the newest one (its cursor)."""

    def __init__(self, tracker: Tracker, filters: Filters, start: datetime) -> None:
        self.tracker = tracker
        self.filters = filters
        self.cursor = start
        self.sent: dict[tuple[datetime, str], None] = {}

    async def round(self) -> AsyncIterator[list[Job]]:
        """Every change since ``OVERLAP`` before the cursor not sent yet, a page at a time."""
        since, after = self.cursor - OVERLAP, None
        while True:
            keys = await to_thread.run_sync(
                self.tracker.ops.change_keys, since, self.filters, PAGE, after
            )
            yield await self.fresh(keys)
            if len(keys) < PAGE:
                return
            since, after = keys[-1]

    async def fresh(self, keys: list[tuple[datetime, str]]) -> list[Job]:
        """The jobs of ``keys`` not sent yet, read now (redacted), noted as sent."""
        unsent = [key for key in keys if key not in self.sent]
        if not unsent:
            return []
        ids = [job_id for _, job_id in unsent]
        found = await to_thread.run_sync(self.tracker.ops.latest, ids, self.filters)
        # A job that changed again since its key was read is sent as it is now, once.
        found = [job for job in found if (job.updated_at, job.id) not in self.sent]
        for key in [*unsent, *((job.updated_at, job.id) for job in found)]:
            self.sent[key] = None
            self.cursor = max(self.cursor, key[0])
        return [self.tracker.redactor.job(job) for job in found]

    def forget_old(self) -> None:
        """Forget what is too old to be read again."""
        for key in [k for k in self.sent if k[0] < self.cursor - OVERLAP]:
            del self.sent[key]


async def _next_change(tracker: Tracker, seen: int, poll: float) -> int:
    """Wait for the next commit to the store (at most ``poll`` seconds), then a moment more,
    so a burst of commits is read once; what ``changes_seen`` is now."""
    if await tracker.ops.next_change(seen, poll):
        await anyio.sleep(SETTLE)
    return tracker.ops.changes_seen


async def _follow_changes(
    tracker: Tracker,
    filters: Filters,
    start: datetime,
    request: Request,
    poll: float,
    recheck: Recheck,
) -> AsyncIterator[bytes]:
    spoke = time.monotonic()
    yield b": stream open\n\n"
    async for batch in changes(tracker, filters, start, poll):
        if await request.is_disconnected() or not await recheck.allowed():
            return
        for job in batch:
            yield sse(job, job.updated_at.isoformat())
        if batch:
            spoke = time.monotonic()
        elif time.monotonic() - spoke >= KEEPALIVE_SECONDS:
            yield b": keepalive\n\n"
            spoke = time.monotonic()
