"""Journal: one structured log line per job state change, and DEBUG lines for progress.

Each state change is logged once, where it is decided (the runner, the progress buffer, the
store's writes, the worker's rescue), at INFO as ``"job <state>"`` with ``state``, ``job_id``,
``kind``, ``owner``, ``attempt`` and ``duration`` (seconds, when the attempt ran). Progress —
a new message or stage, written by a flush — is logged at DEBUG, and only once the application
configured structlog (where the lines go: ``jobtrail.logs``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from jobtrail.jobs import Job, Progress
from jobtrail.logs import logger
from jobtrail.states import Status

if TYPE_CHECKING:
    from jobtrail.progress import ProgressBuffer

log = logger("jobtrail.jobs")


STATES = (
    "created",
    "started",
    "waiting",
    "resumed",
    "queued",
    "retrying",
    "interrupted",
    "rescued",
    "expired",
    "succeeded",
    "partial",
    "failed",
    "cancelled",
)
"""The words a state-change line may carry in ``state``."""


def changed(
    state: str,
    *,
    job_id: str,
    kind: str,
    owner: str | None,
    attempt: int,
    duration: float | None = None,
    **data: Any,
) -> None:
    """Log that a job moved to ``state`` (one of ``STATES``), with what else is worth knowing
    (``error``, ``delay``, ``reason``; those that are None are left out)."""
    if duration is not None:
        duration = round(duration, 6)
    extra = {name: value for name, value in data.items() if value is not None}
    log.info(
        f"job {state}",
        state=state,
        job_id=job_id,
        kind=kind,
        owner=owner,
        attempt=attempt,
        duration=duration,
        **extra,
    )


def job_changed(state: str, job: Job, **data: Any) -> None:
    """``changed`` for a job record read back from the store (with its ``error`` once it
    ended with one)."""
    if job.terminal and job.error_message is not None:
        data.setdefault("error", job.error_message)
    changed(
        state,
        job_id=job.id,
        kind=job.kind,
        owner=job.owner,
        attempt=job.attempt,
        duration=job.duration_seconds,
        **data,
    )


def held_changed(state: str, buffer: ProgressBuffer, **data: Any) -> None:
    """``changed`` for a job a runner holds; ``duration`` defaults to the seconds since the
    runner took it."""
    data.setdefault("duration", time.monotonic() - buffer.began)
    changed(
        state,
        job_id=buffer.job_id,
        kind=buffer.kind,
        owner=buffer.owner,
        attempt=buffer.attempt,
        **data,
    )


def created(rows: Iterable[Mapping[str, Any]]) -> None:
    """Log inserted ``jobs`` rows: ``created``, and ``started`` for those inserted running."""
    for row in rows:
        fields = {"job_id": row["id"], "kind": row["kind"], "owner": row["owner"]}
        changed("created", attempt=row["attempt"], **fields)
        if row["status"] == Status.RUNNING.value:
            changed("started", attempt=row["attempt"], **fields)


def state_of(status: Status) -> str:
    """The state-change word of a move to ``status``."""
    return "started" if status is Status.RUNNING else status.value


def progressed(job_id: str, kind: str, owner: str | None, progress: Progress) -> None:
    """Log a written progress change at DEBUG (only once structlog is configured)."""
    if structlog.is_configured():
        log.debug(
            "job progress",
            job_id=job_id,
            kind=kind,
            owner=owner,
            progress=progress.progress,
            stage=progress.stage,
            message=progress.message,
            items_done=progress.items_done,
        )
