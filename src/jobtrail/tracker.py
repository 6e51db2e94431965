"""Tracker: the facade over settings, the store and the registered job kinds, through which
the web layer, the CLI and the integrations do everything (heavy modules load lazily)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from jobtrail.context import Context
from jobtrail.exceptions import JobTimeout, UnknownKind, UnknownSchedule
from jobtrail.filters import FilterOptions, Filters
from jobtrail.jobs import (
    ACTIVE,
    JSON,
    BulkAction,
    BulkOutcome,
    Event,
    FailedItem,
    ItemPage,
    Job,
    NewFailedItem,
    NewJob,
    Page,
    Stats,
    Status,
    WorkerInfo,
)
from jobtrail.kinds import JobHandle, JobKind, KindOptions, SubmitOptions
from jobtrail.operations import Operations
from jobtrail.redaction import Redactor

if TYPE_CHECKING:
    from jobtrail.scheduler import Schedule
    from jobtrail.settings import Settings
    from jobtrail.store import Store
    from jobtrail.store.database import Clock
    from jobtrail.worker import Worker, WorkerSettings

R = TypeVar("R")


class Tracker:
    """Durable job records and the handlers that produce them.

    ``Tracker(url)`` opens (and, unless disabled, migrates) the store at ``url``; without one it
    reads ``JOBTRAIL_DATABASE_URL`` (default ``sqlite:///jobtrail.db``). Other keyword
    arguments override settings by name (``flush_interval=0.05``) and are validated exactly as
    the ``JOBTRAIL_*`` environment is: a misspelt or invalid one raises ``SettingsError``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> None:
        from jobtrail.journal import default_output
        from jobtrail.settings import configure
        from jobtrail.store import Store
        from jobtrail.store.database import utcnow

        default_output()
        if url is not None:
            overrides["database_url"] = url
        self.settings = settings if settings and not overrides else configure(settings, overrides)
        self.redactor = Redactor(self.settings.redact_patterns, self.settings.max_error_chars)
        self.store: Store = Store(
            self.settings.database_url,
            pool_size=self.settings.pool_size,
            statement_timeout=self.settings.statement_timeout,
            auto_migrate=self.settings.auto_migrate,
            clock=clock or utcnow,
        )
        self.ops = Operations(self.store, self.settings)
        """Change feeds, figures, tokens, stored schedules, the worker registry, expiry."""
        self.kinds: dict[str, JobKind] = {}
        self.schedules: dict[str, Schedule] = {}
        self.startup: list[tuple[str, dict[str, JSON], str | None]] = []
        self.cancel_hooks: list[Callable[[Job], object]] = []
        """Called with the job after each ``cancel`` (the Celery integration revokes there)."""
        self.settle_hooks: builtins.list[Callable[[str], object]] = []
        """Called with a job id before it is read or changed here, to land this process's
        writes of it that are still on their way (the Celery integration's published
        records), so a process always sees the jobs it created."""

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- registration -------------------------------------------------------------------

    def job(
        self, kind: str, **options: Unpack[KindOptions]
    ) -> Callable[[Callable[..., R]], JobHandle[R]]:
        """Register the decorated function as the handler of ``kind``: it receives a
        ``Context`` first and the job's payload as keyword arguments. Options (``KindOptions``):
        ``max_attempts``, ``timeout``, ``queue``, ``priority``, ``stall_after``,
        ``retry_backoff``, ``retain_succeeded``, ``retain_failed`` (days), ``expire_after``."""
        if options.get("max_attempts", 1) < 1:
            raise ValueError("max_attempts must be at least 1")

        def register(func: Callable[..., R]) -> JobHandle[R]:
            spec = JobKind.of(kind, func, **options)
            self.kinds[kind] = spec
            return JobHandle(self, spec, func)

        return register

    def kind_of(self, kind: str) -> JobKind:
        """The registered kind named ``kind``; raises ``UnknownKind``."""
        try:
            return self.kinds[kind]
        except KeyError:
            raise UnknownKind(kind, self.kinds) from None

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        actor: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> Job:
        """Queue one job; returns at once. An existing ``key`` returns the existing job.

        Options: ``owner``, ``key``, ``priority``, ``trigger`` (default ``manual``),
        ``run_after``, ``labels``. Raises ``UnknownKind`` or ``PayloadError`` here, not later
        in a worker.
        """
        return self.submit_or_get(kind, payload, actor=actor, **options)[0]

    def submit_or_get(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        actor: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> tuple[Job, bool]:
        """``submit``, also telling whether the job is new (False: ``key`` existed)."""
        new = self.redactor.new_job(self.kind_of(kind).new_job(payload, self.now(), **options))
        return self.store.jobs.add_or_get([new], actor=actor)[0]

    def submit_many(
        self,
        kind: str,
        payloads: Iterable[Mapping[str, JSON]],
        **options: Unpack[SubmitOptions],
    ) -> builtins.list[Job]:
        """Queue one job per payload in a single transaction; all are validated first (no
        ``key``: one key cannot name several jobs)."""
        if options.get("key") is not None:
            raise ValueError("submit_many takes no key: one key cannot name several jobs")
        spec = self.kind_of(kind)
        now = self.now()
        new = [self.redactor.new_job(spec.new_job(p, now, **options)) for p in payloads]
        return self.store.jobs.add(new) if new else []

    def add(self, new: NewJob, actor: str | None = None) -> tuple[Job, bool]:
        """Record a job described in full, for work that runs elsewhere and ``report``s (no
        registered kind needed); False with the existing job when its ``key`` exists."""
        new = replace(self.redactor.new_job(new), external=True)
        return self.store.jobs.add_or_get([new], actor=actor)[0]

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
        re-raised. A ``key`` that already names a job (of ``owner``) raises ``DuplicateKey``
        with that job: a block cannot attach to work recorded elsewhere.
        """
        from jobtrail.runner import Runner

        new = NewJob(
            kind,
            payload,
            key=key,
            owner=owner,
            trigger=trigger,
            labels=dict(labels or {}),
            items_total=total,
        )
        with Runner(self).in_place(new) as ctx:
            yield ctx

    # -- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        self._settle(job_id)
        return self.store.jobs.get(job_id)

    def _settle(self, job_id: str) -> None:
        for hook in self.settle_hooks:
            hook(job_id)

    def get_by_key(self, key: str, owner: str | None = None) -> Job:
        """The job with idempotency ``key`` among ``owner``'s jobs (keys are scoped per owner;
        None: the unowned jobs); raises ``JobNotFound``."""
        return self.store.jobs.get_by_key(key, owner)

    def list(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        order: str = "created",
        **filters: Unpack[FilterOptions],
    ) -> Page:
        """Jobs matching every given filter (``owner``, ``status`` (one or several), ``kind``,
        ``priority``, ``trigger``, ``created_from``, ``created_to``, ``q``: an id or its
        prefix, a key, or text in the message, ``labels``: ``{key: scalar}``), newest first
        (``order="duration"``: longest first); ``limit`` 1–1000."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if offset < 0:
            raise ValueError("offset must not be negative")
        if order not in ("created", "duration"):
            raise ValueError("order must be 'created' or 'duration'")
        found = Filters.of(**filters)
        return self.store.jobs.find(found, limit=limit, offset=offset, order=order)

    def active(self, owner: str | None = None, limit: int = 1000) -> builtins.list[Job]:
        """Queued, waiting and running jobs, newest first."""
        return builtins.list(self.list(owner=owner, status=list(ACTIVE), limit=limit).jobs)

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> builtins.list[Event]:
        """A job's history, oldest first."""
        self._settle(job_id)
        return self.store.jobs.events(job_id, after=after, limit=limit)

    def failed_items(
        self, job_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[FailedItem]:
        """The items a job failed to process, in the order they failed: those after item id
        ``after``, at most ``limit`` (None: every one listed — at most ``max_failed_items`` a
        run; past it failed items are counted in ``items_failed``, not listed)."""
        self._settle(job_id)
        return self.store.items.failed(job_id, after=after, limit=limit)

    def failed_item_page(self, job_id: str, after: int = 0, limit: int = 100) -> ItemPage:
        """At most ``limit`` (1–1000) of a job's failed items after item id ``after``, with how
        many it lists and the ``after`` of the next page (``ItemPage``)."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if after < 0:
            raise ValueError("after must not be negative")
        self._settle(job_id)
        bound = self.settings.max_failed_items
        return self.store.items.page(job_id, after=after, limit=limit, max_items=bound)

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> Job:
        """Block until the job reaches a terminal state; raises ``JobTimeout`` after ``timeout``.

        The job is read again after each commit to the store (this process's at once, other
        processes' as the store's watcher notices them), and at least every ``poll`` seconds.
        """
        database = self.store.database
        database.watch()
        deadline = time.monotonic() + timeout
        while True:
            seen = database.changes.rung
            job = self.get(job_id)
            if job.terminal:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobTimeout(job_id, timeout, job.status)
            database.changes.wait(seen, min(poll, left))

    def now(self) -> datetime:
        """The store's clock: what ``created_at``/``updated_at`` are measured with."""
        return self.store.clock()

    def stats(
        self,
        days: int = 30,
        owner: str | None = None,
        kind: str | None = None,
        *,
        labels: Mapping[str, JSON] | None = None,
        group_by: str | None = None,
    ) -> Stats:
        """Counts, success rate and duration percentiles of jobs created in the last ``days``
        (with ``labels``: of live jobs having them); ``group_by`` (``"kind"``, ``"owner"`` or
        ``"label:KEY"``) adds the same figures per group in ``Stats.groups``."""
        if days < 1:
            raise ValueError("days must be at least 1")
        Filters.of(labels=labels)  # the same check as a listing's
        return self.store.stats.summary(days, owner, kind, labels, group_by)

    # -- changing -----------------------------------------------------------------------

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint.

        Raises ``IllegalTransition`` for a job that already ended.
        """
        self._settle(job_id)
        job = self.store.jobs.cancel(job_id, actor=actor)
        for hook in self.cancel_hooks:
            hook(job)
        return job

    def retry(self, job_id: str, only_failed_items: bool = False, actor: str | None = None) -> Job:
        """Queue a new job that repeats a failed, partial or cancelled one (``retry_of`` links
        them). With ``only_failed_items`` the new job's ``ctx.items()`` runs only the items
        that failed before. Raises ``IllegalTransition`` for any other job, and
        ``ItemsNotListed`` (one) when the job failed more items than it lists."""
        return self.store.jobs.retry(job_id, only_failed_items, actor=actor)

    def bulk(
        self,
        action: str,
        job_ids: Iterable[str] | None = None,
        *,
        where: Filters | None = None,
        owner: str | None = None,
        actor: str | None = None,
    ) -> BulkOutcome:
        """Cancel, retry or retry the failed items of many jobs (``action``: a ``BulkAction``),
        given by id or matching ``where`` (at most 1,000); only ``owner``'s when given. Each
        job changes as ``cancel``/``retry`` would change it, recorded in its history with the
        ``actor``; jobs the action does not apply to are skipped, with the reason."""
        from jobtrail.bulk import act_on_many, matching

        chosen = BulkAction(action)
        if (job_ids is None) == (where is None):
            raise ValueError("give the jobs either by id or by a filter")
        ids = matching(self, where, owner) if where is not None else job_ids or ()
        return act_on_many(self, chosen, ids, owner, actor)

    def report(
        self,
        job_id: str,
        values: Mapping[str, Any],
        status: Status | None = None,
        actor: str | None = None,
    ) -> Job:
        """Apply progress and/or a status change reported for a job that runs elsewhere.

        ``values`` holds job fields (``progress``, ``message``, ``items_*``, ``result``,
        ``error_message``, ``error_details``, ``progress_data``) and increments that add to the
        stored counts atomically (``advance``, ``succeeded_delta``, ``failed_delta``), so
        concurrent reporters lose no count; ``items_done`` and the percentage follow from the
        item counts. Only jobs made by ``add`` and held by no runner take reports. Raises
        ``IllegalTransition`` (``ReportRefused``) or ``InvalidData``.
        """
        self._settle(job_id)
        return self.store.jobs.report(job_id, self.redactor.reported(values), status, actor=actor)

    def report_items(
        self, job_id: str, items: Iterable[NewFailedItem], actor: str | None = None
    ) -> Job:
        """Record failed items of a job that runs elsewhere (redacted), each counted into its
        ``items_failed`` and listed while the job lists fewer than ``max_failed_items`` (the
        report that reaches the bound adds a ``log`` event saying so); refused like
        ``report``."""
        stored = [self.redactor.failed_item(i) for i in items]
        bound = self.settings.max_failed_items
        return self.store.jobs.report(job_id, {}, None, actor=actor, items=stored, max_items=bound)

    # -- schedules, workers, retention ---------------------------------------------------

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
        from jobtrail.scheduler import Schedule  # croniter loads with the first schedule

        self.kind_of(kind).validate(dict(payload or {}))
        schedule = Schedule(name, kind, cron, every, dict(payload or {}), owner)
        self.schedules[name] = schedule
        return schedule

    def on_startup(
        self, kind: str, payload: Mapping[str, JSON] | None = None, owner: str | None = None
    ) -> None:
        """Submit a job of ``kind`` (``trigger="startup"``) when workers start: once per
        deployment start, however many workers start within one ``startup_window`` (the job's
        key is ``startup:KIND:<window start>``)."""
        self.kind_of(kind).validate(dict(payload or {}))
        self.startup.append((kind, dict(payload or {}), owner))

    def run_schedule(self, name: str, actor: str | None = None) -> Job:
        """Queue a job of schedule ``name`` now, outside its slots (``trigger="manual"``)."""
        from jobtrail.scheduler import submit_slot

        try:
            schedule = self.schedules[name]
        except KeyError:
            raise UnknownSchedule(name) from None
        return submit_slot(self, schedule, None, trigger="manual")

    def worker(
        self,
        concurrency: int | None = None,
        *,
        queues: Iterable[str] | None = None,
        consume: bool = True,
        **options: Unpack[WorkerSettings],
    ) -> Worker:
        """A worker for this tracker's kinds: ``with tracker.worker(4): ...`` or ``.run()``.

        ``heartbeat_interval``, ``heartbeat_timeout``, ``grace_period`` and ``poll_interval``
        left out come from the settings; given ones are validated like them (``0`` is a value,
        not "unset"). ``queues`` limits the worker to those queues. ``consume=False``: run no
        jobs, only the maintenance (rescue, queue watch, expiry, purge), as ``serve`` does.
        """
        from jobtrail.worker import Worker, WorkerOptions

        given = {k: v for k, v in {**options, "concurrency": concurrency}.items() if v is not None}
        return Worker(self, WorkerOptions.of(self._with(given), queues, consume))

    def workers(self) -> builtins.list[WorkerInfo]:
        """The live workers (seen within ``heartbeat_timeout``), jobtrail's and Celery's."""
        return self.store.workers.live(self.settings.heartbeat_timeout)

    def purge(
        self,
        *,
        succeeded_days: float | None = None,
        other_days: float | None = None,
        max_days: float | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Delete finished jobs past their retention, with their events and items, in batches;
        they stay counted in ``stats()`` through the daily summaries. Registered kinds' own ages
        (``retain_succeeded``, ``retain_failed``) win; given ages replace the settings for the
        rest. The cap (``max_days``) rises to the longest age in effect unless given here."""
        from jobtrail.store.retention import RetentionPolicy

        given = {
            "retention_succeeded_days": succeeded_days,
            "retention_other_days": other_days,
            "retention_max_days": max_days,
        }
        settings = self._with({k: v for k, v in given.items() if v is not None})
        kinds, fixed = self.kinds.values(), max_days is not None
        policy = RetentionPolicy.of(settings, self.now(), batch_size, kinds, fixed)
        # A job leaves the table only once the summaries hold it: roll them up to now first.
        self.store.summaries.roll_up(lag=timedelta(0))
        return self.store.retention.purge(policy)

    def _with(self, overrides: Mapping[str, Any]) -> Settings:
        """These settings with ``overrides``, validated like every setting."""
        from jobtrail.settings import configure

        return configure(self.settings, overrides) if overrides else self.settings
