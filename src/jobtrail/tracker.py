"""Tracker: the facade over settings, the store and the registered job kinds, through which
the web layer, the CLI and the integrations do everything (heavy modules load lazily)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from jobtrail.alert_board import AlertBoard
from jobtrail.context import Context
from jobtrail.filters import Filters
from jobtrail.heartbeat import Heartbeat
from jobtrail.jobs import (
    JSON,
    BulkAction,
    BulkOutcome,
    Job,
    NewFailedItem,
    NewJob,
    WorkerInfo,
)
from jobtrail.kinds import JobHandle, JobKind, KindOptions, SubmitOptions
from jobtrail.operations import Operations
from jobtrail.reading import Reading
from jobtrail.redaction import Redactor
from jobtrail.registry import Registry, StartupJob
from jobtrail.runtime import Runtime
from jobtrail.states import Status
from jobtrail.submitter import Submitter
from jobtrail.subscriptions import Webhooks

if TYPE_CHECKING:
    from jobtrail.alerts import AlertRule
    from jobtrail.scheduler import Schedule
    from jobtrail.settings import Settings
    from jobtrail.store import Store
    from jobtrail.store.database import Clock
    from jobtrail.worker import Worker, WorkerSettings

R = TypeVar("R")


class Tracker(Reading):
    """Durable job records and the handlers that produce them.

    ``Tracker(url)`` is the store at ``url``; without one it reads ``JOBTRAIL_DATABASE_URL``
    (default ``sqlite:///jobtrail.db``). Making one connects to nothing and configures
    nothing: the store is connected to, and migrated unless ``auto_migrate=False``, on first
    use — or at ``open()``, to meet a ``SchemaError`` or an unreachable database at startup.
    Other keyword arguments override settings by name (``flush_interval=0.05``) and are
    validated exactly as the ``JOBTRAIL_*`` environment is: a misspelt or invalid one raises
    ``SettingsError``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        **overrides: Any,
    ) -> None:
        from jobtrail.settings import configure
        from jobtrail.store import Store
        from jobtrail.store.database import utcnow

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
        self.webhooks = Webhooks(self.store.webhooks, self.settings, self.store.clock)
        """Webhook subscriptions and their delivery log (docs/webhooks.md)."""
        self.registry = Registry()
        """The registered kinds, schedules and startup jobs."""
        self.alerts = AlertBoard(self.store.alerts)
        """Alert rules as stored and the alerts they raised (docs/alerts.md)."""
        self.submitter = Submitter(self.registry, self.redactor, self.store.jobs, self.store.clock)
        """The one way jobs are created."""
        heartbeat = Heartbeat(self.store.runs, self.store.database)
        self.runtime = Runtime(
            self.store, self.settings, self.registry, self.submitter, self.redactor, heartbeat
        )
        """The parts that run jobs, as a worker and the Celery integration are handed them."""
        self.cancel_hooks: list[Callable[[Job], object]] = []
        """Called with the job after each ``cancel`` (the Celery integration revokes there)."""

    def open(self) -> Tracker:
        """Connect to the store and check its schema (migrating it unless ``auto_migrate`` is
        off) now instead of at first use; returns the tracker. Raises ``SchemaError``, or
        ``StoreUnavailable`` for a database that cannot be reached."""
        self.store.open()
        for rule in self.registry.alerts.values():  # rules declared in code are stored
            self.store.alerts.save_rule(rule, "code")
        return self

    def close(self) -> None:
        """Close the store's connections."""
        self.store.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def kinds(self) -> dict[str, JobKind]:
        """The registered kinds by name."""
        return self.registry.kinds

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The registered schedules by name."""
        return self.registry.schedules

    @property
    def startup(self) -> builtins.list[StartupJob]:
        """The jobs submitted when workers start (``on_startup``)."""
        return self.registry.startup

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
            self.registry.kinds[kind] = spec
            return JobHandle(self.submitter, spec, func)

        return register

    def kind_of(self, kind: str) -> JobKind:
        """The registered kind named ``kind``; raises ``UnknownKind``."""
        return self.registry.kind_of(kind)

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
        return self.submitter.submit_or_get(kind, payload, actor=actor, **options)

    def submit_many(
        self,
        kind: str,
        payloads: Iterable[Mapping[str, JSON]],
        **options: Unpack[SubmitOptions],
    ) -> builtins.list[Job]:
        """Queue one job per payload in a single transaction; all are validated first (no
        ``key``: one key cannot name several jobs)."""
        return self.submitter.submit_many(kind, payloads, **options)

    def add(self, new: NewJob, actor: str | None = None) -> tuple[Job, bool]:
        """Record a job described in full, for work that runs elsewhere and ``report``s (no
        registered kind needed); False with the existing job when its ``key`` exists."""
        return self.submitter.add(new, actor)

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
        with Runner.of(self.runtime).in_place(self.submitter.prepared(new)) as ctx:
            yield ctx

    # -- changing -----------------------------------------------------------------------

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a queued job at once, or ask a running one to stop at its next checkpoint.

        Raises ``IllegalTransition`` for a job that already ended.
        """
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
        ids = matching(self.store.jobs, where, owner) if where is not None else job_ids or ()
        return act_on_many(self, self.store.lineage, chosen, ids, owner, actor)

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
        self.registry.schedules[name] = schedule
        return schedule

    def on_startup(
        self, kind: str, payload: Mapping[str, JSON] | None = None, owner: str | None = None
    ) -> None:
        """Submit a job of ``kind`` (``trigger="startup"``) when workers start: once per
        deployment start, however many workers start within one ``startup_window`` (the job's
        key is ``startup:KIND:<window start>``)."""
        self.kind_of(kind).validate(dict(payload or {}))
        self.registry.startup.append(StartupJob(kind, dict(payload or {}), owner))

    def alert(
        self,
        name: str,
        condition: str,
        *,
        channels: builtins.list[str],
        kind: str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        labels: Mapping[str, str] | None = None,
        **params: JSON,
    ) -> AlertRule:
        """Watch ``condition`` (``failed``, ``failure_rate``, ``stalled``, … docs/alerts.md)
        over a scope's jobs and tell ``channels`` (apprise URLs: ``mailto://…``, ``slack://…``)
        when it fires, at most once per ``group_window`` while it fires, and when it resolves.
        Raises ``AlertRuleRefused`` for a rule that cannot work."""
        from jobtrail.alerts import AlertRule

        rule = AlertRule.of(
            name,
            condition,
            channels=channels,
            kind=kind,
            queue=queue,
            owner=owner,
            labels=labels,
            **params,
        )
        self.registry.alerts[name] = rule
        return rule

    def run_schedule(self, name: str, actor: str | None = None) -> Job:
        """Queue a job of schedule ``name`` now, outside its slots (``trigger="manual"``)."""
        return self.submitter.slot(self.registry.schedule_of(name), None, trigger="manual")

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
        return Worker(self.runtime, WorkerOptions.of(self._with(given), queues, consume))

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
        from jobtrail.maintenance import purge_finished

        given = {
            "retention_succeeded_days": succeeded_days,
            "retention_other_days": other_days,
            "retention_max_days": max_days,
        }
        settings = self._with({k: v for k, v in given.items() if v is not None})
        fixed = max_days is not None
        kinds = self.registry.kinds.values()
        return purge_finished(self.store, settings, kinds, batch_size=batch_size, fixed_cap=fixed)

    def _with(self, overrides: Mapping[str, Any]) -> Settings:
        """These settings with ``overrides``, validated like every setting."""
        from jobtrail.settings import configure

        return configure(self.settings, overrides) if overrides else self.settings
