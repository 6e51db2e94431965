"""Summaries of finished jobs for statistics at scale: per day of creation (per owner, and
every owner added up), per minute of completion, and the mark they are rolled to; the daily
rollups of jobs already purged are their first rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# What this revision needs of the schema and the summaries, frozen here: tables.py and
# summaries.py describe today's.
TIMESTAMP = sa.DateTime(timezone=True)
"""A tz-aware timestamp (the store reads it back as UTC)."""
HISTOGRAM_COLUMNS = [f"h{i}" for i in range(16)]
"""One count column per bucket of the duration histogram: 15 bounds, then the rest."""
ADDED = ["job_count", "duration_count", "duration_sum", *HISTOGRAM_COLUMNS]
"""The columns of a daily summary that adding up over owners adds."""


def upgrade() -> None:
    days = op.create_table(
        "job_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("duration_count", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        *histogram_columns(),
    )
    op.create_index("ix_job_days_owner_day", "job_days", ["owner", "day"])
    kind_days = op.create_table(
        "job_kind_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("duration_count", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        *histogram_columns(),
    )
    op.create_table(
        "job_minutes",
        sa.Column("minute", TIMESTAMP, nullable=False),
        sa.Column("queue", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "queue", "kind", "owner", "status"),
    )
    marks = op.create_table(
        "summary_marks",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("rolled_to", TIMESTAMP, nullable=False),
    )
    assert days is not None
    assert kind_days is not None
    assert marks is not None
    _seed(days, kind_days, marks)


def _seed(days: sa.Table, kind_days: sa.Table, marks: sa.Table) -> None:
    """Purged jobs are known only by their rollups: they become the first summaries. Nothing
    live is rolled yet (the mark is at the epoch); the maintenance loop rolls it."""
    bind = op.get_bind()
    rollups = sa.table(
        "job_rollups",
        sa.column("day", sa.Date()),
        *(sa.column(name) for name in ("kind", "owner", "status", "job_count")),
        sa.column("duration_count"),
        sa.column("duration_sum"),
        sa.column("histogram", sa.JSON()),
    )
    rows = [
        {
            "day": r.day,
            "kind": r.kind,
            "owner": r.owner,
            "status": r.status,
            "job_count": r.job_count,
            "duration_count": r.duration_count,
            "duration_sum": r.duration_sum,
            **dict(zip(HISTOGRAM_COLUMNS, r.histogram, strict=True)),
        }
        for r in bind.execute(sa.select(rollups))
    ]
    if rows:
        op.bulk_insert(days, rows)
        op.bulk_insert(kind_days, summed_over_owners(rows))
    op.bulk_insert(marks, [{"name": "finished", "rolled_to": datetime(1970, 1, 1, tzinfo=UTC)}])


def histogram_columns() -> list[sa.Column[Any]]:
    """The histogram's columns, new for each table (a column belongs to one table)."""
    return [sa.Column(name, sa.Integer(), nullable=False) for name in HISTOGRAM_COLUMNS]


def summed_over_owners(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``job_days`` rows added up over their owners: ``job_kind_days`` rows."""
    summed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["day"], row["kind"], row["status"])
        into = summed.setdefault(key, {"day": key[0], "kind": key[1], "status": key[2]})
        for name in ADDED:
            into[name] = into.get(name, 0) + row[name]
    return list(summed.values())


def downgrade() -> None:
    op.drop_table("summary_marks")
    op.drop_table("job_minutes")
    op.drop_table("job_kind_days")
    op.drop_index("ix_job_days_owner_day", "job_days")
    op.drop_table("job_days")
