"""LineageStore: which jobs were retried, and as which new jobs (``retry_of`` links them)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from jobtrail.store.database import Database
from jobtrail.store.tables import jobs


class LineageStore:
    """Reads of the ``retry_of`` links between jobs."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def retried(self, job_ids: Sequence[str]) -> list[tuple[str, str]]:
        """``(job, its newest retry)`` for each of ``job_ids`` that was retried."""
        if not job_ids:
            return []
        c = jobs.c
        stmt = (
            sa.select(c.retry_of, c.id)
            .where(c.retry_of.in_(list(job_ids)))
            .order_by(c.retry_of, c.created_at)
        )
        with self._db.read() as conn:
            newest = {old: new for old, new in conn.execute(stmt)}
        return list(newest.items())
