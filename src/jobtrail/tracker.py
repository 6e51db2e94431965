"""Tracker: the facade that ties settings, the store and the registered job kinds together."""

from __future__ import annotations

import builtins
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from jobtrail.context import Context
from jobtrail.exceptions import (
    IllegalTransition,
    JobTimeout,
    UnknownKind,
    UnknownSchedule,
)
from jobtrail.jobs import (
    ACTIVE,
    JSON,
    RETRYABLE,
    Event,
    EventType,
    FailedItem,
    Filters,
    Job,
    Page,
    Priority,
    ScheduleInfo,
    ScheduleRun,
    Stats,
    Status,
)
from jobtrail.kinds import JobHandle, JobKind
from jobtrail.redaction import Redactor
from jobtrail.store.records import NewEvent, NewJob

if TYPE_CHECKING:
    from jobtrail.schedules import Schedule
    from jobtrail.settings import Settings
    from jobtrail.store.access import Token
    from jobtrail.store.base import Clock
    from jobtrail.store.gauges import Snapshot
    from jobtrail.store.sql import Store
    from jobtrail.worker import Worker

R = TypeVar("R")


def _require_aware(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise ValueError(
                f"{name} is a naive datetime; give it a time zone (jobtrail stores UTC)"
            )


def runner_identity() -> str:
    """``host:pid:thread`` of the code running a job."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class Tracker:
    """Durable job records and the handlers that produce them.

    ``Tracker(url)`` opens (and, unless disabled, migrates) the store at ``url``; without one it
    reads ``JOBTRAIL_DATABASE_URL`` (default ``sqlite:///jobtrail.db``). Explicit arguments win
    over the environment.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> None:
        # pydantic-settings and SQLAlchemy load when a tracker is made, not at import.
        from jobtrail.settings import Settings
        from jobtrail.store.base import utcnow
        from jobtrail.store.sql import Store

        base = settings or Settings()
        if url is not None:
            overrides["database_url"] = url
        self.settings = base.model_copy(update=overrides) if overrides else base
        self.redactor = Redactor(self.settings.redact_patterns, self.settings.max_error_chars)
        self.store: Store = Store(
            self.settings.database_url,
            pool_size=self.settings.pool_size,
            auto_migrate=self.settings.auto_migrate,
            clock=clock or utcnow,
        )
        self.kinds: dict[str, JobKind] = {}
        self.schedules: dict[str, Schedule] = {}
        self.startup: list[tuple[str, dict[str, JSON], str | None]] = []
        self.cancel_hooks: list[Callable[[Job], object]] = []
        """Called with the job after each ``cancel`` (the Celery integration revokes there)."""

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registration -------------------------------------------------------------------

    def job(
        self,
        kind: str,
        *,
        max_attempts: int = 1,
        timeout: float | None = None,
        queue: str = "default",
        priority: Priority | str = Priority.NORMAL,
        stall_after: float | None = None,
        retry_backoff: float = 1.0,
    ) -> Callable[[Callable[..., R]], JobHandle[..., R]]:
        """Register the decorated function as the handler of ``kind``.

        The handler receives a ``Context`` first and the job's payload as keyword arguments.
        A handler exception is retried while attempts remain, after about
        ``retry_backoff * 2**(attempt-1)`` seconds (with jitter). ``stall_after`` flags a
        running job whose progress has not moved for that many seconds.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

        def register(func: Callable[..., R]) -> JobHandle[..., R]:
            spec = JobKind(
                kind,
                func,
                max_attempts,
                timeout,
                queue,
                Priority(priority),
                stall_after,
                retry_backoff,
            )
            self.kinds[kind] = spec
            return JobHandle(self, spec, func)

        return register

    def _kind(self, kind: str) -> JobKind:
        try:
            return self.kinds[kind]
        except KeyError:
            raise UnknownKind(kind, self.kinds) from None

    # -- submitting ---------------------------------------------------------------------

    def _new_job(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None,
        *,
        owner: str | None,
        key: str | None,
        priority: Priority | str | None,
        trigger: str,
        run_after: datetime | None,
        labels: Mapping[str, JSON] | None,
    ) -> NewJob:
        spec = self._kind(kind)
        body = dict(payload or {})
        spec.validate(body)
        _require_aware(run_after=run_after)
        return NewJob(
            kind=kind,
            payload=body,
            key=key,
            owner=owner,
            trigger=trigger,
            queue=spec.queue,
            priority=spec.priority if priority is None else Priority(priority),
            labels=dict(labels or {}),
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            run_after=run_after,
        )

    def submit(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        owner: str | None = None,
        key: str | None = None,
        priority: Priority | str | None = None,
        trigger: str = "manual",
        run_after: datetime | None = None,
        labels: Mapping[str, JSON] | None = None,
        actor: str | None = None,
    ) -> Job:
        """Queue one job; returns at once. An existing ``key`` returns the existing job.

        Raises ``UnknownKind`` or ``PayloadError`` here, not later in a worker.
        """
        return self.submit_or_get(
            kind,
            payload,
            owner=owner,
            key=key,
            priority=priority,
            trigger=trigger,
            run_after=run_after,
            labels=labels,
            actor=actor,
        )[0]

    def submit_or_get(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        owner: str | None = None,
        key: str | None = None,
        priority: Priority | str | None = None,
        trigger: str = "manual",
        run_after: datetime | None = None,
        labels: Mapping[str, JSON] | None = None,
        actor: str | None = None,
    ) -> tuple[Job, bool]:
        """``submit``, also telling whether the job is new (False: ``key`` existed)."""
        new = self._new_job(
            kind,
            payload,
            owner=owner,
            key=key,
            priority=priority,
            trigger=trigger,
            run_after=run_after,
            labels=labels,
        )
        return self.store.add_or_get([new], actor=actor)[0]

    def submit_many(
        self,
        kind: str,
        payloads: Iterable[Mapping[str, JSON]],
        *,
        owner: str | None = None,
        priority: Priority | str | None = None,
        trigger: str = "manual",
        run_after: datetime | None = None,
        labels: Mapping[str, JSON] | None = None,
    ) -> list[Job]:
        """Queue one job per payload in a single transaction; all are validated first."""
        new = [
            self._new_job(
                kind,
                p,
                owner=owner,
                key=None,
                priority=priority,
                trigger=trigger,
                run_after=run_after,
                labels=labels,
            )
            for p in payloads
        ]
        return self.store.add(new) if new else []

    # -- tracking work in place ---------------------------------------------------------

    @contextmanager
    def track(
        self,
        kind: str,
        *,
        owner: str | None = None,
        trigger: str = "manual",
        total: int | None = None,
        payload: JSON = None,
        key: str | None = None,
        labels: Mapping[str, JSON] | None = None,
    ) -> Iterator[Context]:
        """Record work that runs right here, in this block, as a running job.

        The job ends ``succeeded``, ``partial`` or ``failed`` from its items when the block
        ends; an exception marks it ``failed`` (``cancelled`` for ``Cancelled``) and is
        re-raised.
        """
        new = NewJob(
            kind=kind,
            payload=payload,
            key=key,
            owner=owner,
            trigger=trigger,
            labels=dict(labels or {}),
            items_total=total,
        )
        lease = uuid.uuid4().hex
        job = self.store.start(new, worker=runner_identity(), lease=lease)
        ctx = Context(
            job,
            self.store,
            lease,
            redactor=self.redactor,
            flush_interval=self.settings.flush_interval,
        )
        from jobtrail.runner import Heartbeat, Runner  # tenacity and structlog load on first use

        runner = Runner(self)
        with Heartbeat(ctx, self.store, lease, self.settings.heartbeat_interval):
            try:
                yield ctx
            except BaseException as exc:
                runner.fail(ctx, exc)
                raise
            runner.succeed(ctx, None)

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        return self.store.get(job_id)

    def list(
        self,
        *,
        owner: str | None = None,
        status: Status | str | Sequence[Status | str] | None = None,
        kind: str | None = None,
        priority: Priority | str | None = None,
        trigger: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
        order: str = "created",
    ) -> Page:
        """Jobs matching every given filter, newest first (``order="duration"``: longest
        first); ``limit`` 1–1000."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if offset < 0:
            raise ValueError("offset must not be negative")
        _require_aware(created_from=created_from, created_to=created_to)
        statuses = [status] if isinstance(status, str) else builtins.list(status or [])
        filters = Filters(
            owner=owner,
            statuses=[Status(s) for s in statuses],
            kind=kind,
            priority=None if priority is None else Priority(priority),
            trigger=trigger,
            created_from=created_from,
            created_to=created_to,
            q=q,
        )
        if order not in ("created", "duration"):
            raise ValueError("order must be 'created' or 'duration'")
        return self.store.find(filters, limit=limit, offset=offset, order=order)

    def active(self, owner: str | None = None, limit: int = 1000) -> builtins.list[Job]:
        """Queued, waiting and running jobs, newest first."""
        return builtins.list(self.list(owner=owner, status=list(ACTIVE), limit=limit).jobs)

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> builtins.list[Event]:
        """A job's history, oldest first."""
        return self.store.events(job_id, after=after, limit=limit)

    def failed_items(self, job_id: str) -> builtins.list[FailedItem]:
        """The items a job failed to process."""
        return self.store.failed_items(job_id)

    def now(self) -> datetime:
        """The store's clock: what ``created_at``/``updated_at`` are measured with."""
        return self.store.clock()

    def changes(self, since: datetime, filters: Filters, limit: int = 200) -> builtins.list[Job]:
        """Jobs matching ``filters`` updated at or after ``since``, oldest change first."""
        return self.store.changes(since, filters, limit)

    def timeline(
        self, days: int, owner: str | None = None, kind: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Jobs created per day (``YYYY-MM-DD``) and status over the last ``days`` days."""
        return self.store.timeline(days, owner=owner, kind=kind)

    def gauges(self) -> Snapshot:
        """Every metric figure, read from the store in one transaction."""
        return self.store.gauges()

    def health(self) -> str | None:
        """The store's schema revision, read with a round trip; ``StoreError`` if unreachable."""
        from jobtrail.store.schema import current_revision

        return current_revision(self.store.engine)

    def add(self, new: NewJob, actor: str | None = None) -> tuple[Job, bool]:
        """Record a job described in full, for work that runs elsewhere (no registered kind
        needed); False with the existing job when its ``key`` exists."""
        return self.store.add_or_get([new], actor=actor)[0]

    def report(
        self,
        job_id: str,
        values: Mapping[str, Any],
        status: Status | None = None,
        actor: str | None = None,
    ) -> Job:
        """Apply progress and/or a status change reported for a job that runs elsewhere.

        ``values`` holds job fields (``progress``, ``message``, ``items_*``, ``result``,
        ``error_message``, ``error_details``, ``progress_data``); ``items_done`` and the
        percentage follow from the item counts. Raises ``IllegalTransition``.
        """
        job = self.store.get(job_id)
        values = dict(values)
        if "items_succeeded" in values or "items_failed" in values:
            succeeded = values.get("items_succeeded", job.items_succeeded) or 0
            failed = values.get("items_failed", job.items_failed) or 0
            values["items_done"] = succeeded + failed
            total = values.get("items_total", job.items_total)
            if "progress" not in values and total:
                values["progress"] = min(values["items_done"] * 100.0 / total, 100.0)
        if values.get("error_details") is not None:
            values["error_details"] = self.redactor.json(values["error_details"])
        return self.store.report(job_id, values, status, actor=actor)

    # -- tokens -------------------------------------------------------------------------

    def create_token(self, name: str, owner: str | None = None) -> str:
        """Create an API token (``owner`` None: admin) and return its secret, shown once."""
        return self.store.create_token(name, owner)

    def find_token(self, secret: str) -> Token | None:
        """The live token with this secret, or None (unknown or revoked)."""
        return self.store.find_token(secret)

    def tokens(self) -> builtins.list[Token]:
        """Every token, live and revoked, by name (never their secrets)."""
        return self.store.list_tokens()

    def revoke_token(self, name: str) -> bool:
        """Revoke a token by name; False if there is no live token of that name."""
        return self.store.revoke_token(name)

    def stats(self, days: int = 30, owner: str | None = None, kind: str | None = None) -> Stats:
        """Counts, success rate and duration percentiles of jobs created in the last ``days``."""
        if days < 1:
            raise ValueError("days must be at least 1")
        return self.store.stats(days=days, owner=owner, kind=kind)

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint.

        Raises ``IllegalTransition`` for a job that already ended.
        """
        job = self.store.cancel(job_id, actor=actor)
        for hook in self.cancel_hooks:
            hook(job)
        return job

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> Job:
        """Block until the job reaches a terminal state; raises ``JobTimeout`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = min(poll, 0.01)
        while True:
            job = self.store.get(job_id)
            if job.terminal:
                return job
            if time.monotonic() >= deadline:
                raise JobTimeout(job_id, timeout, job.status)
            time.sleep(delay)
            delay = min(delay * 2, poll)

    # -- running ------------------------------------------------------------------------

    def worker(
        self,
        concurrency: int | None = None,
        *,
        queues: Iterable[str] | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        grace_period: float | None = None,
        poll_interval: float | None = None,
    ) -> Worker:
        """A worker for this tracker's kinds: ``with tracker.worker(4): ...`` or ``.run()``.

        Unset options come from the settings (``JOBTRAIL_*``).
        """
        from jobtrail.worker import Worker, WorkerOptions

        s = self.settings
        options = WorkerOptions(
            concurrency=concurrency or s.concurrency,
            heartbeat_interval=heartbeat_interval or s.heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout or s.heartbeat_timeout,
            grace_period=s.grace_period if grace_period is None else grace_period,
            poll_interval=poll_interval or s.poll_interval,
            purge_interval=s.purge_interval,
            queues=None if queues is None else frozenset(queues),
        )
        return Worker(self, options)

    def retry(self, job_id: str, only_failed_items: bool = False, actor: str | None = None) -> Job:
        """Queue a new job that repeats a failed, partial or cancelled one (``retry_of`` links
        them). With ``only_failed_items`` the new job's ``ctx.items()`` runs only the items
        that failed before."""
        old = self.store.get(job_id)
        if old.status not in RETRYABLE:
            raise IllegalTransition(job_id, old.status, Status.QUEUED)
        only = None
        if only_failed_items:
            only = [item.item_id for item in self.store.failed_items(job_id)]
        new = NewJob(
            kind=old.kind,
            payload=old.payload,
            owner=old.owner,
            trigger="retry",
            queue=old.queue,
            priority=old.priority,
            labels=old.labels,
            max_attempts=old.max_attempts,
            timeout=old.timeout,
            retry_of=old.id,
            only_items=only,
        )
        job = self.store.add([new], actor=actor)[0]
        note = f"retried as {job.id}" + (" (failed items only)" if only is not None else "")
        self.store.note(job_id, NewEvent(EventType.LOG, note, {"retry": job.id}, actor))
        return job

    # -- schedules and retention --------------------------------------------------------

    def schedule(
        self,
        name: str,
        kind: str,
        *,
        cron: str | None = None,
        every: float | None = None,
        payload: Mapping[str, JSON] | None = None,
        owner: str | None = None,
    ) -> Schedule:
        """Create a job of ``kind`` at every slot of ``cron`` (e.g. ``"*/5 * * * *"``) or
        every ``every`` seconds, from any running worker; one job per slot however many run."""
        from jobtrail.schedules import Schedule  # croniter loads with the first schedule

        self._kind(kind).validate(dict(payload or {}))
        schedule = Schedule(name, kind, cron, every, dict(payload or {}), owner)
        self.schedules[name] = schedule
        return schedule

    def on_startup(
        self, kind: str, payload: Mapping[str, JSON] | None = None, owner: str | None = None
    ) -> None:
        """Submit a job of ``kind`` (``trigger="startup"``) each time a worker starts."""
        self._kind(kind).validate(dict(payload or {}))
        self.startup.append((kind, dict(payload or {}), owner))

    def submit_scheduled(
        self, schedule: Schedule, slot: datetime | None, trigger: str = "scheduled"
    ) -> Job:
        """Queue the job of one slot of ``schedule`` (idempotent: the slot is the job's key)."""
        new = self._new_job(
            schedule.kind,
            schedule.payload,
            owner=schedule.owner,
            key=None if slot is None else schedule.key(slot),
            priority=None,
            trigger=trigger,
            run_after=None,
            labels=None,
        )
        return self.store.add([replace(new, schedule=schedule.name)])[0]

    def list_schedules(
        self, owner: str | None = None, recent: int = 20
    ) -> builtins.list[ScheduleInfo]:
        """Stored schedules by name (only ``owner``'s when given), each with its ``recent``
        last audited slots, newest first."""
        return [
            ScheduleInfo(
                name=s.name,
                kind=s.kind,
                cron=s.cron,
                every_seconds=s.every_seconds,
                owner=s.owner,
                last_slot_at=s.last_slot_at,
                next_run_at=s.next_run_at,
                recent_runs=[
                    ScheduleRun(**vars(r)) for r in self.store.schedule_runs(s.name, recent)
                ],
            )
            for s in self.store.list_schedules()
            if owner is None or s.owner == owner
        ]

    def run_schedule(self, name: str, actor: str | None = None) -> Job:
        """Queue a job of schedule ``name`` now, outside its slots (``trigger="manual"``)."""
        try:
            schedule = self.schedules[name]
        except KeyError:
            raise UnknownSchedule(name) from None
        return self.submit_scheduled(schedule, None, trigger="manual")

    def purge(
        self,
        *,
        succeeded_days: float | None = None,
        other_days: float | None = None,
        max_days: float | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Delete finished jobs past their retention (defaults from the settings), with their
        events and items, in batches; they stay counted in ``stats()`` through daily rollups."""
        from jobtrail.store.planning import RetentionPolicy

        s = self.settings
        now = self.store.clock()
        policy = RetentionPolicy(
            succeeded_before=now - timedelta(days=succeeded_days or s.retention_succeeded_days),
            others_before=now - timedelta(days=other_days or s.retention_other_days),
            created_before=now - timedelta(days=max_days or s.retention_max_days),
            batch_size=batch_size,
        )
        return self.store.purge(policy)
