"""Journal: one structured log line per job state change, and DEBUG lines for progress.

Each state change is logged once, where it is decided (the runner, the progress buffer, the
store's writes, the worker's rescue), at INFO as ``"job <state>"`` with ``state``, ``job_id``,
``kind``, ``owner``, ``attempt`` and ``duration`` (seconds, when the attempt ran). Progress —
a new message or stage, written by a flush — is logged at DEBUG, and only once the application
configured structlog (``default_output`` sends the lines to stderr at INFO until it does).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

from jobtrail.jobs import Job, Progress, Status
from jobtrail.redaction import Redactor

if TYPE_CHECKING:
    from jobtrail.progress import ProgressBuffer

log = structlog.get_logger("jobtrail.jobs")
_SECRETS = Redactor()


def default_output() -> None:
    """Unless the application configured structlog, send jobtrail's lines to stderr at INFO:
    stdout stays the application's own (a command's JSON, a script's output), and DEBUG lines
    (progress) stay quiet. Tracebacks are plain, never with the frames' local variables (a
    driver's hold the database password), and credentials in any text are masked. An
    application that configures structlog decides everything."""
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.StackInfoRenderer(),
                structlog.dev.set_exc_info,
                structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
                structlog.processors.format_exc_info,
                _masked,
                structlog.dev.ConsoleRenderer(colors=_colors()),
            ],
            logger_factory=_stderr,
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )


def _colors() -> bool:
    # As structlog decides by default, but for stderr, where the lines go.
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or getattr(sys.stderr, "isatty", bool)()


def _masked(logger: Any, method: str, line: MutableMapping[str, Any]) -> Mapping[str, Any]:
    # The last guard: whatever a line's text says (an error's message, a traceback), it never
    # shows a password.
    for key, value in line.items():
        if isinstance(value, str):
            line[key] = _SECRETS.text(value)
    return line


def _stderr(*args: Any) -> structlog.PrintLogger:
    # Whatever ``sys.stderr`` is when a line is written (a test's capture, a redirected one).
    return structlog.PrintLogger(sys.stderr)


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
