"""Submitter: the one way a job is created — validated, redacted, checked storable, its
times taken from the tracker's clock, then inserted — whoever creates it (``submit``,
``submit_many``, schedules, startup jobs, ``track``, ``add``, Celery publishes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Unpack

from jobtrail.exceptions import PayloadError
from jobtrail.jobs import JSON, Job, NewJob
from jobtrail.redaction import check_storable

if TYPE_CHECKING:
    from jobtrail.kinds import SubmitOptions
    from jobtrail.redaction import Redactor
    from jobtrail.registry import Registry
    from jobtrail.scheduler import Schedule
    from jobtrail.store.database import Clock
    from jobtrail.store.records import JobStore


class Submitter:
    """Makes new jobs of the registered kinds, or of a caller's description, as stored."""

    def __init__(
        self, registry: Registry, redactor: Redactor, jobs: JobStore, clock: Clock
    ) -> None:
        self.registry = registry
        self.redactor = redactor
        self.jobs = jobs
        self.clock = clock

    def new(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        now: datetime | None = None,
        **options: Unpack[SubmitOptions],
    ) -> NewJob:
        """A job of the registered ``kind`` as it is stored: ``UnknownKind``, or
        ``PayloadError`` unless ``payload`` binds to its handler and is storable JSON."""
        spec = self.registry.kind_of(kind)
        return self.redactor.new_job(spec.new_job(payload, now or self.clock(), **options))

    def prepared(self, new: NewJob) -> NewJob:
        """A job described in full by its caller (``add``, ``track``, a Celery task), as it
        is stored: its payload refused as ``submit`` refuses one (``PayloadError``), its other
        fields checked and redacted."""
        try:
            check_storable(new.payload)
        except ValueError as exc:
            raise PayloadError(new.kind, f"not storable JSON: {exc}") from None
        return self.redactor.new_job(new)

    def submit_or_get(
        self,
        kind: str,
        payload: Mapping[str, JSON] | None = None,
        *,
        actor: str | None = None,
        **options: Unpack[SubmitOptions],
    ) -> tuple[Job, bool]:
        """Insert one job of ``kind``; False with the existing job when its ``key`` exists."""
        return self.jobs.add_or_get([self.new(kind, payload, **options)], actor=actor)[0]

    def submit_many(
        self, kind: str, payloads: Iterable[Mapping[str, JSON]], **options: Unpack[SubmitOptions]
    ) -> list[Job]:
        """Insert one job per payload in one transaction, each validated first."""
        if options.get("key") is not None:
            raise ValueError("submit_many takes no key: one key cannot name several jobs")
        now = self.clock()
        news = [self.new(kind, payload, now, **options) for payload in payloads]
        return self.jobs.add(news) if news else []

    def add(self, new: NewJob, actor: str | None = None) -> tuple[Job, bool]:
        """Insert a job described in full, run elsewhere (``external``); False with the
        existing job when its ``key`` exists."""
        return self.jobs.add_or_get([self.prepared(replace(new, external=True))], actor)[0]

    def slot(self, schedule: Schedule, slot: datetime | None, trigger: str = "scheduled") -> Job:
        """The job of one slot of ``schedule`` (idempotent: the slot is its key), or with no
        slot a job outside the slots."""
        key = None if slot is None else schedule.key(slot)
        new = self.new(
            schedule.kind, schedule.payload, owner=schedule.owner, key=key, trigger=trigger
        )
        return self.jobs.add([replace(new, schedule=schedule.name)])[0]
