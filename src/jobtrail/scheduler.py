"""Schedules at run time: cron or interval slots that create one job each, audited per tick."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from croniter import croniter

from jobtrail.filters import Filters
from jobtrail.jobs import JSON, Job, ScheduleRun

if TYPE_CHECKING:
    from jobtrail.registry import Registry
    from jobtrail.runtime import Runtime
    from jobtrail.store.schedules import ScheduleStore
    from jobtrail.submitter import Submitter

MAX_MISSED_RECORDED = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Outcome:
    """What a tick did with a slot."""

    FIRED = "fired"
    DEDUPLICATED = "deduplicated"
    MISSED = "missed"


@dataclass(frozen=True)
class Schedule:
    """A named rule that creates a job of ``kind`` at every slot: ``cron`` or ``every`` seconds."""

    name: str
    kind: str
    cron: str | None = None
    every: float | None = None
    payload: Mapping[str, JSON] = field(default_factory=dict)
    owner: str | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r} needs exactly one of cron= or every=")
        if self.every is not None and self.every <= 0:
            raise ValueError(f"schedule {self.name!r}: every= must be positive")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"schedule {self.name!r}: invalid cron expression {self.cron!r}")

    @property
    def _cron(self) -> str:
        assert self.cron is not None
        return self.cron

    def latest_slot(self, now: datetime) -> datetime:
        """The most recent slot at or before ``now``."""
        if self.every is not None:
            n = math.floor((now - EPOCH).total_seconds() / self.every)
            return EPOCH + timedelta(seconds=n * self.every)
        base = now + timedelta(microseconds=1)  # a slot exactly at ``now`` counts as due
        slot: datetime = croniter(self._cron, base).get_prev(datetime)
        return slot.astimezone(UTC)

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""
        if self.every is not None:
            return self.latest_slot(after) + timedelta(seconds=self.every)
        slot: datetime = croniter(self._cron, after).get_next(datetime)
        return slot.astimezone(UTC)

    def slots_between(self, after: datetime, now: datetime) -> list[datetime]:
        """Slots in ``(after, now]``: the due ones since the last tick, oldest first.

        At most ``MAX_MISSED_RECORDED + 1`` are returned: the newest, and the missed ones
        just before it.
        """
        latest = self.latest_slot(now)
        if latest <= after:
            return []
        slots = [latest]
        cursor = latest
        while len(slots) <= MAX_MISSED_RECORDED:
            cursor = self._previous(cursor)
            if cursor <= after:
                break
            slots.append(cursor)
        return slots[::-1]

    def _previous(self, slot: datetime) -> datetime:
        if self.every is not None:
            return slot - timedelta(seconds=self.every)
        prev: datetime = croniter(self._cron, slot).get_prev(datetime)
        return prev.astimezone(UTC)

    def key(self, slot: datetime) -> str:
        """The job key of ``slot``: what makes one job per slot across processes."""
        return f"schedule:{self.name}:{slot.isoformat()}"


class Scheduler:
    """Ticks the registered schedules; any number of processes may tick the same ones."""

    def __init__(
        self, registry: Registry, submitter: Submitter, store: ScheduleStore, worker: str
    ) -> None:
        self.registry = registry
        self.submitter = submitter
        self.store = store
        self.clock = submitter.clock
        self.worker = worker

    @classmethod
    def of(cls, runtime: Runtime, worker: str) -> Scheduler:
        """The scheduler of ``runtime``'s schedules, for ``worker``."""
        return cls(runtime.registry, runtime.submitter, runtime.store.schedules, worker)

    def register(self) -> None:
        """Store every schedule's definition (keeping the slots already handled)."""
        now = self.clock()
        for s in self.registry.schedules.values():
            first = s.latest_slot(now)
            self.store.save(
                s.name,
                s.kind,
                cron=s.cron,
                every_seconds=s.every,
                payload=s.payload,
                owner=s.owner,
                first_slot=first,
                next_run_at=s.next_slot(first),
            )

    def tick(self) -> list[ScheduleRun]:
        """Fire every due slot once; record missed slots instead of running them in a burst."""
        runs: list[ScheduleRun] = []
        for schedule in self.registry.schedules.values():
            runs.extend(self._tick_one(schedule))
        return runs

    def _tick_one(self, schedule: Schedule) -> list[ScheduleRun]:
        now = self.clock()
        state = self.store.get(schedule.name)
        last = state.last_slot_at if state and state.last_slot_at else schedule.latest_slot(now)
        slots = schedule.slots_between(last, now)
        if not slots:
            return []
        latest = slots[-1]
        job = self.submitter.slot(schedule, latest)
        won = self.store.advance(schedule.name, last, latest, schedule.next_slot(latest))
        runs = [
            ScheduleRun(schedule.name, slot, Outcome.MISSED, None, self.worker, now)
            for slot in slots[:-1]
            if won
        ]
        outcome = Outcome.FIRED if won else Outcome.DEDUPLICATED
        runs.append(ScheduleRun(schedule.name, latest, outcome, job.id, self.worker, now))
        self.store.record_runs(runs)
        return runs


def startup_key(kind: str, payload: Mapping[str, JSON], now: datetime, window: float) -> str:
    """The key of ``kind``'s startup job for workers starting at ``now``: one per start
    window of ``window`` seconds (``startup:KIND:<window start>``, with a digest of a
    non-empty payload, so one kind started with two payloads gives two jobs)."""
    start = math.floor(now.timestamp() / window) * window
    key = f"startup:{kind}:{datetime.fromtimestamp(start, UTC).isoformat()}"
    if payload:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        key += f":{digest[:12]}"
    return key


def submit_startup_jobs(registry: Registry, submitter: Submitter, window: float) -> list[Job]:
    """Submit each ``on_startup`` job once per deployment start: a worker that starts within
    ``window`` seconds of the last startup job of that kind, payload and owner shares it, and
    workers starting together agree on the key of the window they start in."""
    now = submitter.clock()
    since = now - timedelta(seconds=window)
    return [
        submitter.submit_or_get(
            job.kind,
            job.payload,
            owner=job.owner,
            trigger="startup",
            key=startup_key(job.kind, job.payload, now, window),
        )[0]
        for job in registry.startup
        if not _started_since(submitter, job.kind, job.payload, job.owner, since)
    ]


def _started_since(
    submitter: Submitter,
    kind: str,
    payload: Mapping[str, JSON],
    owner: str | None,
    since: datetime,
) -> bool:
    """Whether a startup job like this one was created since ``since`` (e.g. by a worker that
    started just before the current window began)."""
    recent = Filters.of(kind=kind, owner=owner, trigger="startup", created_from=since)
    found = submitter.jobs.find(recent, limit=100, offset=0, order="created")
    return any(j.owner == owner and j.payload == dict(payload) for j in found.jobs)
