"""Jobs, their events and their failed items.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The column types as this revision made them, frozen here: tables.py describes today's schema.
TIMESTAMP = sa.DateTime(timezone=True)
"""A tz-aware timestamp (the store reads it back as UTC)."""
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""SQLite autoincrements only an ``INTEGER PRIMARY KEY``."""


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), nullable=True),
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
        sa.Column("progress_data", JSON_TYPE, nullable=True),
        sa.Column("payload", JSON_TYPE, nullable=True),
        sa.Column("result", JSON_TYPE, nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_details", JSON_TYPE, nullable=True),
        sa.Column("labels", JSON_TYPE, nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("completed_at", TIMESTAMP, nullable=True),
        sa.Column("run_after", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("stalled", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("lease", sa.String(32), nullable=True),
        sa.Column("schedule", sa.String(200), nullable=True),
        sa.Column("retry_of", sa.String(64), nullable=True),
        sa.Column("only_items", JSON_TYPE, nullable=True),
        sa.UniqueConstraint("key", name="uq_jobs_key"),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", sa.text("priority DESC"), "run_after"])
    for columns in (
        ("owner", "created_at", "id"),
        ("kind", "created_at", "id"),
        ("status", "created_at", "id"),
        ("created_at", "id"),
        ("completed_at",),
        ("updated_at",),
    ):
        op.create_index("ix_jobs_" + "_".join(columns), "jobs", list(columns))

    op.create_table(
        "job_events",
        sa.Column("id", EVENT_ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("data", JSON_TYPE, nullable=True),
        sa.Column("actor", sa.String(200), nullable=True),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])

    op.create_table(
        "job_items",
        sa.Column("id", EVENT_ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("item_id", sa.String(500), nullable=False),
        sa.Column("error_type", sa.String(200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_job_items_job_id_item_id", "job_items", ["job_id", "item_id"])


def downgrade() -> None:
    op.drop_table("job_items")
    op.drop_table("job_events")
    op.drop_table("jobs")
