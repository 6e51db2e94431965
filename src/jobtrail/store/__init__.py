"""The store: one database, reached through parts named for what they keep.

``Store(url)`` is a SQLite file or a PostgreSQL database, connected to (and, unless told not
to, migrated) on first use or at ``open()``. Its parts: ``jobs`` (records and their changes
from outside), ``runs`` (the writes of whoever runs a job), ``items`` (failed items, a page
at a time), ``schedules``, ``tokens``, ``stats``, ``summaries`` (finished jobs rolled up for
statistics), ``flow`` (throughput and queues), ``lineage`` (retries), ``retention``,
``expiry`` (unfinished work past its time), ``workers`` (the registry of live workers) and
``celery`` (the records of Celery tasks), ``alerts`` (rules, alerts, notifications) and
``alert_reads`` (what alert conditions read); ``webhooks`` (subscriptions, and their
deliveries as ``webhooks.deliveries``).
"""

from __future__ import annotations

from jobtrail.store.alert_reads import AlertReads
from jobtrail.store.alerts import AlertStore
from jobtrail.store.celery_rows import CeleryRows
from jobtrail.store.database import Clock, Database, utcnow
from jobtrail.store.expiry import ExpiryStore
from jobtrail.store.feed import FeedStore
from jobtrail.store.flow import FlowStore
from jobtrail.store.items import ItemStore
from jobtrail.store.lineage import LineageStore
from jobtrail.store.migrate import ensure_schema
from jobtrail.store.records import JobStore
from jobtrail.store.retention import RetentionStore
from jobtrail.store.runs import RunStore
from jobtrail.store.schedules import ScheduleStore
from jobtrail.store.statements import Statements
from jobtrail.store.stats import StatsStore
from jobtrail.store.summaries import SummaryStore
from jobtrail.store.tokens import TokenStore
from jobtrail.store.webhooks import WebhookStore
from jobtrail.store.workers import WorkerStore


class Store:
    """The only code that talks to the database, as one part per kind of record."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout: float = 0.0,
        auto_migrate: bool = True,
        clock: Clock = utcnow,
    ) -> None:
        self.database = Database(
            url, pool_size=pool_size, statement_timeout=statement_timeout, clock=clock
        )
        engine = self.database.engine
        self.database.open_with(lambda: ensure_schema(engine, auto_migrate))
        statements = Statements(self.database.engine.dialect, self.database.heartbeat_clock)
        self.jobs = JobStore(self.database, statements)
        self.runs = RunStore(self.database, statements)
        self.items = ItemStore(self.database)
        self.schedules = ScheduleStore(self.database)
        self.tokens = TokenStore(self.database, statements)
        self.stats = StatsStore(self.database)
        self.summaries = SummaryStore(self.database)
        self.flow = FlowStore(self.database)
        self.lineage = LineageStore(self.database)
        self.feed = FeedStore(self.database)
        self.retention = RetentionStore(self.database)
        self.expiry = ExpiryStore(self.database)
        self.workers = WorkerStore(self.database)
        self.celery = CeleryRows(self.database)
        self.webhooks = WebhookStore(self.database)
        self.alerts = AlertStore(self.database)
        self.alert_reads = AlertReads(self.database)

    @property
    def clock(self) -> Clock:
        """The clock every timestamp the store writes is read from."""
        return self.database.clock

    def revision(self) -> str | None:
        """The schema revision, read with one round trip (a health check)."""
        with self.database.raw(write=None) as session:
            session.cursor.execute("SELECT version_num FROM alembic_version")
            row = session.cursor.fetchone()
        return None if row is None else str(row[0])

    def open(self) -> Store:
        """Connect, and check the schema (migrating it unless told not to), now rather than at
        first use: ``SchemaError`` or ``StoreUnavailable`` here. Returns the store."""
        self.database.open()
        return self

    def close(self) -> None:
        """Release every pooled connection."""
        self.database.close()


def open_store(
    url: str, *, pool_size: int = 10, auto_migrate: bool = True, clock: Clock = utcnow
) -> Store:
    """The store at ``url`` (``sqlite:///path`` or ``postgresql://…``), opened."""
    return Store(url, pool_size=pool_size, auto_migrate=auto_migrate, clock=clock).open()


__all__ = ["Store", "open_store"]
