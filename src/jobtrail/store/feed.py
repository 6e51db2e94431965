"""FeedStore: the change feed that live streams follow — which jobs changed since a moment, in
order of change, cheap to read again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from jobtrail.filters import Filters
from jobtrail.jobs import Job
from jobtrail.store.database import Database
from jobtrail.store.filters import listing_conditions
from jobtrail.store.rows import JOB_COLUMNS, job_from_row
from jobtrail.store.tables import jobs

Change = tuple[datetime, str]
"""A job's ``(updated_at, id)``: one change of it, and its place in the feed."""


class FeedStore:
    """Jobs by the moment they last changed (``updated_at``, then id: a total order)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def changes(
        self, since: datetime, filters: Filters, limit: int = 200, after: str | None = None
    ) -> list[Job]:
        """Jobs matching ``filters`` updated at or after ``since``, oldest change first; with
        ``after`` (a job id), those updated exactly at ``since`` start past it, so a reader
        pages through any number of changes made at one moment."""
        stmt = (
            sa.select(*JOB_COLUMNS)
            .where(_from(since, after), *listing_conditions(filters))
            .order_by(jobs.c.updated_at, jobs.c.id)
            .limit(limit)
        )
        return self._jobs(stmt)

    def keys(
        self, since: datetime, filters: Filters, limit: int = 500, after: str | None = None
    ) -> list[Change]:
        """What ``changes`` would return, as ``(updated_at, id)`` only: reading the same span
        again (to catch a late commit) costs two columns a job, not a whole record."""
        stmt = (
            sa.select(jobs.c.updated_at, jobs.c.id)
            .where(_from(since, after), *listing_conditions(filters))
            .order_by(jobs.c.updated_at, jobs.c.id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [(row.updated_at, row.id) for row in conn.execute(stmt)]

    def latest(self, job_ids: Sequence[str], filters: Filters) -> list[Job]:
        """The jobs of ``job_ids`` as they are now, still matching ``filters``, oldest change
        first."""
        if not job_ids:
            return []
        stmt = (
            sa.select(*JOB_COLUMNS)
            .where(jobs.c.id.in_(list(job_ids)), *listing_conditions(filters))
            .order_by(jobs.c.updated_at, jobs.c.id)
        )
        return self._jobs(stmt)

    def _jobs(self, stmt: sa.Select[tuple[object, ...]]) -> list[Job]:
        with self._db.read() as conn:
            rows = conn.execute(stmt).all()
        now = self._db.clock()
        return [job_from_row(r._mapping, now) for r in rows]


def _from(since: datetime, after: str | None) -> sa.ColumnElement[bool]:
    """Changes at or after ``since`` (past job ``after`` at ``since`` itself, when given)."""
    if after is None:
        return jobs.c.updated_at >= since
    return sa.or_(jobs.c.updated_at > since, sa.and_(jobs.c.updated_at == since, jobs.c.id > after))
