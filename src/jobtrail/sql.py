"""SQL for applications that keep their own tables beside jobtrail's (in the same database, or
another): an engine made with jobtrail's settings for SQLite and PostgreSQL (WAL, busy
timeout, foreign keys, the statement timeout; ``sqlite:///`` and ``postgresql://`` URLs as
``Tracker`` takes them), and a column type that keeps datetimes tz-aware UTC on SQLite too."""

from __future__ import annotations

from jobtrail.store.database import create_engine
from jobtrail.store.tables import UTCDateTime

__all__ = ["UTCDateTime", "create_engine"]
