"""The database schema: tables, indexes and the column types shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from jobtrail.jobs import DURATION_BUCKETS


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always tz-aware UTC in Python, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: jobtrail stores tz-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), nullable=True),
    # Keys are unique per owner: the owner, or '' for jobs without one (NULLs never collide).
    sa.Column("key_scope", sa.String(200), nullable=False, server_default=""),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("trigger", sa.String(50), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Float(), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("items_total", sa.Integer(), nullable=True),
    sa.Column("items_done", sa.Integer(), nullable=True),
    sa.Column("items_succeeded", sa.Integer(), nullable=True),
    sa.Column("items_failed", sa.Integer(), nullable=True),
    sa.Column("progress_data", JSONType, nullable=True),
    sa.Column("payload", JSONType, nullable=True),
    sa.Column("result", JSONType, nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("error_details", JSONType, nullable=True),
    sa.Column("labels", JSONType, nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("timeout", sa.Float(), nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("started_at"),
    _ts("completed_at"),
    _ts("run_after", nullable=False),
    _ts("heartbeat_at"),
    sa.Column("duration_seconds", sa.Float(), nullable=True),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    sa.Column("stalled", sa.Boolean(), nullable=False),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("lease", sa.String(32), nullable=True),
    sa.Column("schedule", sa.String(200), nullable=True),
    sa.Column("retry_of", sa.String(64), nullable=True),
    sa.Column("only_items", JSONType, nullable=True),
    sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("stage", sa.String(100), nullable=True),
    sa.Column("wait_reason", sa.Text(), nullable=True),
    _ts("expires_at"),
    sa.Column("report_timeout", sa.Float(), nullable=True),
    sa.UniqueConstraint("key_scope", "key"),
    # Claims read WHERE status = 'queued' AND run_after <= now ORDER BY priority DESC, run_after.
    sa.Index("ix_jobs_claim", "status", sa.text("priority DESC"), "run_after"),
    # Listings read newest first with the id as tie-break (submit_many shares a created_at).
    sa.Index("ix_jobs_owner_created_at_id", "owner", "created_at", "id"),
    sa.Index("ix_jobs_kind_created_at_id", "kind", "created_at", "id"),
    sa.Index("ix_jobs_status_created_at_id", "status", "created_at", "id"),
    sa.Index("ix_jobs_created_at_id", "created_at", "id"),
    sa.Index("ix_jobs_completed_at", "completed_at"),
    sa.Index("ix_jobs_updated_at", "updated_at"),
    sa.Index("ix_jobs_expires_at", "expires_at"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
    _ts("at", nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("data", JSONType, nullable=True),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Index("ix_job_events_job_id_id", "job_id", "id"),
)

job_items = sa.Table(
    "job_items",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("item_id", sa.String(500), nullable=False),
    sa.Column("error_type", sa.String(200), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    _ts("at", nullable=False),
    sa.Index("ix_job_items_job_id_id", "job_id", "id"),
)

# Webhooks (docs/webhooks.md): subscriptions; the outbox a trigger on ``job_events`` fills in
# the transaction of each announced event; one delivery per event and matching subscription;
# every attempt at sending one.
webhook_subscriptions = sa.Table(
    "webhook_subscriptions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=True),  # None: an admin's, over every owner
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("event_types", JSONType, nullable=True),  # filters: None matches any
    sa.Column("kinds", JSONType, nullable=True),
    sa.Column("queues", JSONType, nullable=True),
    sa.Column("labels", JSONType, nullable=True),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("previous_secret", sa.String(200), nullable=True),
    _ts("previous_secret_until"),
    sa.Column("allow_private", sa.Boolean(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    _ts("disabled_at"),
    sa.Column("disabled_reason", sa.Text(), nullable=True),
    _ts("created_at", nullable=False),
    sa.Column("created_by", sa.String(200), nullable=True),
    _ts("updated_at", nullable=False),
    sa.Index("ix_webhook_subscriptions_owner_id", "owner", "id"),
)

webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("event_id", EventId, nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # The id is the Standard Webhooks ``webhook-id``: the same on every retry and replay.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("subscription_id", sa.String(64), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),  # no foreign key: jobs are purged
    sa.Column("event_id", EventId, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("payload", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    _ts("next_attempt_at", nullable=False),
    _ts("locked_until"),
    sa.Column("lease", sa.String(32), nullable=True),
    _ts("created_at", nullable=False),
    _ts("retry_from", nullable=False),  # the retry window starts here (creation, or replay)
    _ts("delivered_at"),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_job_id_event_id", "job_id", "event_id"),
    sa.Index(
        "ix_webhook_deliveries_subscription_id_created_at_id", "subscription_id", "created_at", "id"
    ),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(64), nullable=False),
    _ts("at", nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("duration", sa.Float(), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("response", sa.Text(), nullable=True),  # the body's first KiB
    sa.Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("cron", sa.String(200), nullable=True),
    sa.Column("every_seconds", sa.Float(), nullable=True),
    sa.Column("payload", JSONType, nullable=True),
    sa.Column("owner", sa.String(200), nullable=True),
    _ts("last_slot_at"),
    _ts("next_run_at"),
    _ts("updated_at", nullable=False),
)

schedule_runs = sa.Table(
    "schedule_runs",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("schedule", sa.String(200), nullable=False),
    _ts("slot_at", nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=True),
    sa.Column("worker", sa.String(200), nullable=True),
    _ts("at", nullable=False),
    sa.Index("ix_schedule_runs_schedule_id", "schedule", "id"),
)

job_rollups = sa.Table(
    "job_rollups",
    metadata,
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("kind", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("job_count", sa.Integer(), nullable=False),
    sa.Column("duration_count", sa.Integer(), nullable=False),
    sa.Column("duration_sum", sa.Float(), nullable=False),
    sa.Column("histogram", JSONType, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(200), nullable=True),
    _ts("created_at", nullable=False),
    _ts("revoked_at"),
    sa.UniqueConstraint("token_hash"),
)

job_labels = sa.Table(
    "job_labels",
    metadata,
    # One row per scalar label of a job (its value as text), so label filters and
    # per-label statistics read an index on both dialects.
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
    sa.Index("ix_job_labels_key_value_job_id", "key", "value", "job_id"),
)

workers = sa.Table(
    "workers",
    metadata,
    # Live workers, kept by their heartbeats: a row whose last_seen_at is recent is alive.
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("engine", sa.String(20), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("queues", JSONType, nullable=True),
    sa.Column("kinds", JSONType, nullable=True),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("running", sa.Integer(), nullable=False),
    _ts("started_at", nullable=False),
    _ts("last_seen_at", nullable=False),
    sa.Index("ix_workers_last_seen_at", "last_seen_at"),
)

# Summaries of finished jobs, rolled forward by the maintenance loop (``store/summaries.py``),
# so statistics and charts at a million jobs read a few hundred rows instead of the jobs.
HISTOGRAM_COLUMNS = [f"h{i}" for i in range(len(DURATION_BUCKETS) + 1)]
"""One count column per bucket of the duration histogram (the last: longer than every bound)."""


def histogram_columns() -> list[sa.Column[Any]]:
    """The histogram's columns, new for each table (a column belongs to one table)."""
    return [sa.Column(name, sa.Integer(), nullable=False) for name in HISTOGRAM_COLUMNS]


job_days = sa.Table(
    "job_days",
    metadata,
    # Finished jobs per day of creation (UTC), kind, owner ("" unowned) and status.
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("kind", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("job_count", sa.Integer(), nullable=False),
    sa.Column("duration_count", sa.Integer(), nullable=False),
    sa.Column("duration_sum", sa.Float(), nullable=False),
    *histogram_columns(),
    sa.Index("ix_job_days_owner_day", "owner", "day"),
)

job_kind_days = sa.Table(
    "job_kind_days",
    metadata,
    # The same per day, kind and status, every owner added up: what ``stats()`` reads without
    # an owner (a few thousand rows at any number of jobs and owners).
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("kind", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("job_count", sa.Integer(), nullable=False),
    sa.Column("duration_count", sa.Integer(), nullable=False),
    sa.Column("duration_sum", sa.Float(), nullable=False),
    *histogram_columns(),
)

job_minutes = sa.Table(
    "job_minutes",
    metadata,
    # Finished jobs per minute of completion (UTC), queue, kind, owner and status; kept for
    # the recent hours only (``SUMMARY_MINUTES_KEPT``).
    _ts("minute", nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("job_count", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("minute", "queue", "kind", "owner", "status"),
)

summary_marks = sa.Table(
    "summary_marks",
    metadata,
    # How far the summaries are rolled: every job finished before ``rolled_to`` is in them.
    sa.Column("name", sa.String(50), primary_key=True),
    _ts("rolled_to", nullable=False),
)

# Alerts (docs/alerts.md): rules declared in code or over the API, the alerts they raised (at
# most one firing per rule and scope: ``open_key`` is set while firing, NULL once resolved) and
# the notifications sent to their channels; ``leases`` names the one process that evaluates.
alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("source", sa.String(10), nullable=False),  # "code" or "api"
    sa.Column("condition", sa.String(50), nullable=False),
    sa.Column("params", JSONType, nullable=False),
    sa.Column("scope", JSONType, nullable=False),
    sa.Column("channels", JSONType, nullable=False),  # URLs holding secrets: never shown
    sa.Column("enabled", sa.Boolean(), nullable=False),
    # Where the evaluation of an event-like condition has read to (and what it saw last).
    sa.Column("cursor", JSONType, nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("scope_key", sa.String(500), nullable=False),
    sa.Column("open_key", sa.String(710), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text(), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("notified_count", sa.Integer(), nullable=False),
    _ts("first_at", nullable=False),
    _ts("last_at", nullable=False),
    _ts("notified_at", nullable=False),
    _ts("resolved_at"),
    sa.Column("job_ids", JSONType, nullable=False),
    sa.Column("details", JSONType, nullable=True),
    sa.UniqueConstraint("open_key"),
    sa.Index("ix_alerts_rule_id", "rule", "id"),
    sa.Index("ix_alerts_status_id", "status", "id"),
    sa.Index("ix_alerts_resolved_at", "resolved_at"),
)

alert_notifications = sa.Table(
    "alert_notifications",
    metadata,
    sa.Column("id", EventId, primary_key=True, autoincrement=True),
    sa.Column("alert_id", EventId, nullable=False),
    sa.Column("channel_index", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(300), nullable=False),  # the redacted label
    sa.Column("what", sa.String(16), nullable=False),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    _ts("next_attempt_at", nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    _ts("created_at", nullable=False),
    _ts("sent_at"),
    sa.Index("ix_alert_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_alert_notifications_alert_id_id", "alert_id", "id"),
)

leases = sa.Table(
    "leases",
    metadata,
    # A duty one process holds at a time (the alert evaluation), taken by compare-and-set.
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    _ts("until", nullable=False),
)

# The worker-lost condition reads ``rescued`` events by id; a partial index keeps that read
# off every other event (one entry per rescue, nothing for the rest).
sa.Index(
    "ix_job_events_rescued_id",
    job_events.c.id,
    sqlite_where=job_events.c.type == "rescued",
    postgresql_where=job_events.c.type == "rescued",
)
