"""Stages and wait reasons of jobs, expiry of unstarted and silent jobs, a table of label
values for indexed label filters, and the registry of live workers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The column types as this revision made them, frozen here: tables.py describes today's schema.
TIMESTAMP = sa.DateTime(timezone=True)
"""A tz-aware timestamp (the store reads it back as UTC)."""
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

LABEL_VALUE_CHARS = 200


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stage", sa.String(100), nullable=True))
        batch.add_column(sa.Column("wait_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("report_timeout", sa.Float(), nullable=True))
        batch.create_index("ix_jobs_expires_at", ["expires_at"])
    labels = op.create_table(
        "job_labels",
        sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.String(LABEL_VALUE_CHARS), nullable=False),
    )
    op.create_index("ix_job_labels_key_value_job_id", "job_labels", ["key", "value", "job_id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("engine", sa.String(20), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", JSON_TYPE, nullable=True),
        sa.Column("kinds", JSON_TYPE, nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_workers_last_seen_at", "workers", ["last_seen_at"])
    _restore_claim_index()
    _copy_labels(labels)


def downgrade() -> None:
    op.drop_index("ix_workers_last_seen_at", "workers")
    op.drop_table("workers")
    op.drop_index("ix_job_labels_key_value_job_id", "job_labels")
    op.drop_table("job_labels")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_expires_at")
        batch.drop_column("report_timeout")
        batch.drop_column("expires_at")
        batch.drop_column("wait_reason")
        batch.drop_column("stage")
    _restore_claim_index()


def label_text(value: Any) -> str | None:
    """How a label value is indexed: text as it is, numbers and booleans as JSON; None for
    values that are not scalars (they stay in the job's labels, unindexed)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value[:LABEL_VALUE_CHARS]
    if isinstance(value, int | float):
        return repr(value)
    return None


def _copy_labels(labels: sa.Table) -> None:
    """Index the labels of the jobs already stored."""
    jobs = sa.table("jobs", sa.column("id", sa.String()), sa.column("labels", JSON_TYPE))
    conn = op.get_bind()
    rows = []
    for job_id, found in conn.execute(sa.select(jobs.c.id, jobs.c.labels)):
        for key, value in (found or {}).items():
            text = label_text(value)
            if text is not None and len(key) <= 100:
                rows.append({"job_id": job_id, "key": key, "value": text})
        if len(rows) >= 5000:
            op.bulk_insert(labels, rows)
            rows = []
    if rows:
        op.bulk_insert(labels, rows)


def _restore_claim_index() -> None:
    """SQLite's batch mode copies the table and may lose the DESC of the claim index."""
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_jobs_claim", "jobs")
        op.create_index("ix_jobs_claim", "jobs", ["status", sa.text("priority DESC"), "run_after"])
