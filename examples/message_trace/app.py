"""message_trace: consumes scrape requests from a Redis Stream, runs each as a jobtrail job and
serves its trace — the API, a polling page at ``/trace?message_id=…`` and the jobtrail
dashboard at ``/jobtrail/``."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from anyio import to_thread
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from examples.message_trace.consumer import Consumer
from examples.message_trace.traces import (
    Limit,
    Skip,
    Trace,
    TracePage,
    open_tracker,
    trace_of,
    traces_of,
)
from jobtrail.web import create_app

REDIS_URL = os.environ.get("MESSAGE_TRACE_REDIS_URL", "redis://127.0.0.1:6379/0")
CLAIM_IDLE = float(os.environ.get("MESSAGE_TRACE_CLAIM_IDLE", "60"))
tracker = open_tracker()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    consumer = Consumer(client, tracker, f"{socket.gethostname()}:{os.getpid()}", CLAIM_IDLE)
    thread = threading.Thread(target=consumer.run, name="stream-consumer")
    worker = tracker.worker(concurrency=4)
    worker.start()
    thread.start()
    try:
        yield
    finally:
        consumer.stop.set()
        await to_thread.run_sync(thread.join)
        await to_thread.run_sync(worker.stop)
        client.close()


api = APIRouter(prefix="/api/v1/jobs")


@api.get("/status/{message_id}")
def job_status(message_id: str) -> Trace:
    return trace_of(tracker, message_id)


@api.get("/user/{line_user_id}")
def user_jobs(line_user_id: str, limit: Limit = 10, skip: Skip = 0) -> TracePage:
    return traces_of(tracker, line_user_id, limit, skip)


app = FastAPI(title="message_trace", lifespan=lifespan)
app.include_router(api)
app.mount("/jobtrail", create_app(tracker, no_auth=True, run_worker=False))


@app.get("/trace", include_in_schema=False)
def trace_page() -> FileResponse:
    """The polling page: ``/trace?message_id=…`` shows the trace until it ends."""
    return FileResponse(Path(__file__).with_name("page.html"))
