"""Reading: the facade's read half — one job, a page of jobs, a job's history and failed
items, figures, and waiting for a job to end — over the parts of one store."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Unpack

from jobtrail.exceptions import JobTimeout
from jobtrail.filters import FilterOptions, Filters
from jobtrail.jobs import JSON, Event, FailedItem, ItemPage, Job, Page, Stats
from jobtrail.states import ACTIVE

if TYPE_CHECKING:
    from jobtrail.settings import Settings
    from jobtrail.store import Store


class Reading:
    """What ``Tracker`` reads (its ``store`` and ``settings``)."""

    store: Store
    settings: Settings

    def get(self, job_id: str) -> Job:
        """The job with this id; raises ``JobNotFound``."""
        return self.store.jobs.get(job_id)

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
        return self.store.jobs.events(job_id, after=after, limit=limit)

    def failed_items(
        self, job_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[FailedItem]:
        """The items a job failed to process, in the order they failed: those after item id
        ``after``, at most ``limit`` (None: every one listed — at most ``max_failed_items`` a
        run; past it failed items are counted in ``items_failed``, not listed)."""
        return self.store.items.failed(job_id, after=after, limit=limit)

    def failed_item_page(self, job_id: str, after: int = 0, limit: int = 100) -> ItemPage:
        """At most ``limit`` (1–1000) of a job's failed items after item id ``after``, with how
        many it lists and the ``after`` of the next page (``ItemPage``)."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if after < 0:
            raise ValueError("after must not be negative")
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
