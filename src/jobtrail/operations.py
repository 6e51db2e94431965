"""Operations: what the web layer, the CLI and the integrations ask of a tracker beyond the
job API — change feeds, figures, tokens, schedules as stored, the worker registry, expiry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jobtrail.exceptions import StoreError
from jobtrail.filters import Filters
from jobtrail.jobs import Job, QueueInfo, ScheduleInfo, WorkerInfo
from jobtrail.logs import logger

if TYPE_CHECKING:
    from jobtrail.settings import Settings
    from jobtrail.store import Store
    from jobtrail.store.feed import Change
    from jobtrail.store.gauges import Snapshot
    from jobtrail.store.summaries import Rolled
    from jobtrail.store.tokens import Token
    from jobtrail.store.workers import QueueWatch


log = logger("jobtrail.web")


class Operations:
    """``tracker.ops``: the tracker's store seen by operators and by jobtrail's own edges, so
    none of them reaches into the store."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    def changes(
        self, since: datetime, filters: Filters, limit: int = 200, after: str | None = None
    ) -> list[Job]:
        """Jobs matching ``filters`` updated at or after ``since``, oldest change first; with
        ``after`` (a job id), those updated exactly at ``since`` start past it (the next page)."""
        return self._store.feed.changes(since, filters, limit, after)

    def change_keys(
        self, since: datetime, filters: Filters, limit: int = 500, after: str | None = None
    ) -> list[Change]:
        """What ``changes`` would return as ``(updated_at, id)`` only: cheap to read again."""
        return self._store.feed.keys(since, filters, limit, after)

    def latest(self, job_ids: Sequence[str], filters: Filters) -> list[Job]:
        """The jobs of ``job_ids`` as they are now, if they still match ``filters``, oldest
        change first."""
        return self._store.feed.latest(job_ids, filters)

    def note_failure(self, error: StoreError, during: str) -> None:
        """Log a failed store call of a loop that goes on (a live stream): a database that
        is away once for every loop of the process, any other failure once each."""
        if not self._store.database.outage.noted(error, during):
            log.warning("store call failed", during=during, error=str(error))

    @property
    def changes_seen(self) -> int:
        """How many commits to the store this process has seen (what ``next_change`` takes)."""
        return self._store.database.changes.rung

    async def next_change(self, seen: int, timeout: float) -> bool:
        """Wait until a commit to the store after ``changes_seen`` was ``seen`` (True), by
        this process or, as its watcher notices, another; or ``timeout`` seconds (False)."""
        database = self._store.database
        database.watch()
        return await database.changes.wait_async(seen, timeout)

    def timeline(
        self, days: int, owner: str | None = None, kind: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Jobs created per day (``YYYY-MM-DD``) and status over the last ``days`` days."""
        return self._store.stats.timeline(days, owner=owner, kind=kind)

    def finished(
        self, since: datetime, bucket: timedelta, owner: str | None = None
    ) -> dict[datetime, dict[str, int]]:
        """Jobs finished since ``since`` (the last 48 hours at most) per ``bucket`` of whole
        minutes and status, keyed by bucket start: throughput and failures by the minute."""
        return self._store.flow.finished(since, bucket, owner)

    def queues(self, owner: str | None = None) -> list[QueueInfo]:
        """Every queue with work or finished jobs in the last hour (``owner``'s jobs only when
        given), each with the live workers consuming it."""
        live = self._store.workers.live(self._settings.heartbeat_timeout)
        return [
            replace(q, workers=sum(1 for w in live if w.consumes(q.name)))
            for q in self._store.flow.queues(owner)
        ]

    def gauges(self) -> Snapshot:
        """Every metric figure, read from the store in one transaction."""
        return self._store.stats.gauges()

    def health(self) -> str | None:
        """The store's schema revision, read with one round trip; ``StoreError`` if unreachable."""
        return self._store.revision()

    def create_token(self, name: str, owner: str | None = None) -> str:
        """Create an API token (``owner`` None: admin) and return its secret, shown once."""
        return self._store.tokens.create(name, owner)

    def find_token(self, secret: str) -> Token | None:
        """The live token with this secret, or None (unknown or revoked)."""
        return self._store.tokens.find(secret)

    def tokens(self) -> list[Token]:
        """Every token, live and revoked, by name (never their secrets)."""
        return self._store.tokens.list_all()

    def revoke_token(self, name: str) -> bool:
        """Revoke a token by name; False if there is no live token of that name."""
        return self._store.tokens.revoke(name)

    def list_schedules(self, owner: str | None = None, recent: int = 20) -> list[ScheduleInfo]:
        """Stored schedules by name (only ``owner``'s when given), each with its ``recent``
        last audited slots, newest first."""
        return self._store.schedules.list_all(owner=owner, recent=recent)

    def announce_worker(self, info: WorkerInfo) -> None:
        """Register or refresh a live worker (its heartbeat; ``Presence`` calls it)."""
        self._store.workers.announce(info)

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly from the registry."""
        self._store.workers.forget(worker_id)

    def watch_queues(self) -> QueueWatch:
        """Park queued jobs no live worker would take (``waiting``), release them when one can."""
        return self._store.workers.watch_queues(self._settings.heartbeat_timeout)

    def expire(self) -> list[Job]:
        """End unstarted jobs past ``expires_at`` (``cancelled``, "expired") and external jobs
        silent past ``report_timeout`` (``failed``); workers and ``serve`` run it every
        heartbeat interval."""
        return self._store.expiry.expire()

    def roll_up(self) -> Rolled:
        """Fold the jobs finished since the last roll-up into the per-day and per-minute
        summaries that ``stats()``, the charts and the queues read (a few seconds behind now;
        what finished since is counted live)."""
        return self._store.summaries.roll_up()
