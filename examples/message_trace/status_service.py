"""The traces as a standalone microservice on its own port: ``GET /job/status?message_id=…``
and ``GET /job/user?line_user_id=…``, read from the same store."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query

from examples.message_trace.traces import (
    Limit,
    Skip,
    Trace,
    TracePage,
    open_tracker,
    trace_of,
    traces_of,
)

Text = Annotated[str, Query(min_length=1, max_length=200)]
tracker = open_tracker()
app = FastAPI(title="message_trace status service")


@app.get("/job/status")
def job_status(message_id: Text) -> Trace:
    return trace_of(tracker, message_id)


@app.get("/job/user")
def job_user(line_user_id: Text, limit: Limit = 10, skip: Skip = 0) -> TracePage:
    return traces_of(tracker, line_user_id, limit, skip)
