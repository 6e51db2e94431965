"""Alerts: rules (declared in code or over the API), the alerts they raised while firing and
once resolved, and the notifications sent to their channels.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The column types as this revision made them, frozen here: tables.py describes today's schema.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("condition", sa.String(50), nullable=False),
        sa.Column("params", JSON_TYPE, nullable=False),
        sa.Column("scope", JSON_TYPE, nullable=False),
        sa.Column("channels", JSON_TYPE, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("cursor", JSON_TYPE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_alert_rules"),
    )
    _create_alerts()
    _create_notifications()
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("until", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )
    rescued = sa.text("type = 'rescued'")
    op.create_index(
        "ix_job_events_rescued_id",
        "job_events",
        ["id"],
        sqlite_where=rescued,
        postgresql_where=rescued,
    )


def _create_alerts() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("scope_key", sa.String(500), nullable=False),
        sa.Column("open_key", sa.String(710), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("notified_count", sa.Integer(), nullable=False),
        sa.Column("first_at", TIMESTAMP, nullable=False),
        sa.Column("last_at", TIMESTAMP, nullable=False),
        sa.Column("notified_at", TIMESTAMP, nullable=False),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("job_ids", JSON_TYPE, nullable=False),
        sa.Column("details", JSON_TYPE, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("open_key", name="uq_alerts_open_key"),
    )
    op.create_index("ix_alerts_rule_id", "alerts", ["rule", "id"])
    op.create_index("ix_alerts_status_id", "alerts", ["status", "id"])
    op.create_index("ix_alerts_resolved_at", "alerts", ["resolved_at"])


def _create_notifications() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", ROW_ID, nullable=False),
        sa.Column("channel_index", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(300), nullable=False),
        sa.Column("what", sa.String(16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_alert_notifications"),
    )
    op.create_index(
        "ix_alert_notifications_status_next_attempt_at",
        "alert_notifications",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_alert_notifications_alert_id_id", "alert_notifications", ["alert_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_job_events_rescued_id", "job_events")
    for table in ("leases", "alert_notifications", "alerts", "alert_rules"):
        op.drop_table(table)
