"""Webhooks: subscriptions, the outbox every announced job event is written to in the same
transaction as the event (by a trigger on ``job_events``), deliveries and their attempts.

The trigger writes an outbox row only for the announced event types and only while an
enabled subscription exists, so a store without webhooks pays one indexed check per event.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ANNOUNCED = (
    "created",
    "started",
    "waiting",
    "stage",
    "retrying",
    "succeeded",
    "partial",
    "failed",
    "cancelled",
    "rescued",
)
"""The ``job_events`` types webhooks announce (an expiry is a ``cancelled`` event)."""


# The column types as this revision made them, frozen here: tables.py describes today's schema.
TIMESTAMP = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, TIMESTAMP, nullable=nullable)


def upgrade() -> None:
    _create_subscriptions()
    op.create_table(
        "webhook_outbox",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column("event_id", EventId, nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
    )
    _create_deliveries()
    op.create_table(
        "webhook_attempts",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(64), nullable=False),
        _ts("at", nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
    )
    op.create_index("ix_webhook_attempts_delivery_id_id", "webhook_attempts", ["delivery_id", "id"])
    _create_trigger()


def _create_subscriptions() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", JSONType, nullable=True),
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
    )
    op.create_index("ix_webhook_subscriptions_owner_id", "webhook_subscriptions", ["owner", "id"])


def _create_deliveries() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("event_id", EventId, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at", nullable=False),
        _ts("locked_until"),
        sa.Column("lease", sa.String(32), nullable=True),
        _ts("created_at", nullable=False),
        _ts("retry_from", nullable=False),
        _ts("delivered_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    table = "webhook_deliveries"
    op.create_index(f"ix_{table}_status_next_attempt_at", table, ["status", "next_attempt_at"])
    op.create_index(f"ix_{table}_job_id_event_id", table, ["job_id", "event_id"])
    op.create_index(
        f"ix_{table}_subscription_id_created_at_id", table, ["subscription_id", "created_at", "id"]
    )


def _create_trigger() -> None:
    types = ", ".join(f"'{t}'" for t in ANNOUNCED)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION jobtrail_webhook_outbox() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE enabled) THEN
                    INSERT INTO webhook_outbox (event_id, job_id) VALUES (NEW.id, NEW.job_id);
                END IF;
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER jobtrail_webhook_outbox AFTER INSERT ON job_events FOR EACH ROW "
            f"WHEN (NEW.type IN ({types})) EXECUTE FUNCTION jobtrail_webhook_outbox()"
        )
        return
    op.execute(
        "CREATE TRIGGER jobtrail_webhook_outbox AFTER INSERT ON job_events FOR EACH ROW "
        f"WHEN NEW.type IN ({types}) "
        "AND EXISTS (SELECT 1 FROM webhook_subscriptions WHERE enabled) "
        "BEGIN INSERT INTO webhook_outbox (event_id, job_id) VALUES (NEW.id, NEW.job_id); END"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobtrail_webhook_outbox" + _on_events())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION jobtrail_webhook_outbox()")
    for table in ("webhook_attempts", "webhook_deliveries", "webhook_outbox"):
        op.drop_table(table)
    op.drop_table("webhook_subscriptions")


def _on_events() -> str:
    return " ON job_events" if op.get_bind().dialect.name == "postgresql" else ""
