"""Schedules with their audit trail, and daily rollups of purged jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
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
        "schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("every_seconds", sa.Float(), nullable=True),
        sa.Column("payload", JSON_TYPE, nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("last_slot_at", TIMESTAMP, nullable=True),
        sa.Column("next_run_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("id", EVENT_ID, primary_key=True, autoincrement=True),
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("slot_at", TIMESTAMP, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_schedule_runs_schedule_id", "schedule_runs", ["schedule", "id"])
    op.create_table(
        "job_rollups",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("duration_count", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("histogram", JSON_TYPE, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_rollups")
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
