"""Idempotency keys unique per owner (``key_scope``), and the ``external`` flag of jobs that
run elsewhere and report.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CLAIM_INDEX = ("status", sa.text("priority DESC"), "run_after")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("key_scope", sa.String(200), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("external", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    jobs = sa.table(
        "jobs",
        *(sa.column(name, sa.String()) for name in ("owner", "key_scope", "worker")),
        sa.column("started_at", sa.DateTime()),
        sa.column("external", sa.Boolean()),
    )
    op.execute(jobs.update().where(jobs.c.owner.is_not(None)).values(key_scope=jobs.c.owner))
    # Which older jobs ran elsewhere is not recorded; a job that started without a jobtrail
    # runner ever holding it (no worker) can only have been reported. A queued one stays
    # internal: taking reports for it could let a PATCH overwrite a worker's job.
    started_elsewhere = sa.and_(jobs.c.worker.is_(None), jobs.c.started_at.is_not(None))
    op.execute(jobs.update().where(started_elsewhere).values(external=sa.true()))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_key", type_="unique")
        batch.create_unique_constraint("uq_jobs_key_scope_key", ["key_scope", "key"])
    _restore_claim_index()


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_key_scope_key", type_="unique")
        batch.create_unique_constraint("uq_jobs_key", ["key"])
        batch.drop_column("external")
        batch.drop_column("key_scope")
    _restore_claim_index()


def _restore_claim_index() -> None:
    """SQLite's batch mode copies the table and may lose the DESC of the claim index."""
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_jobs_claim", "jobs")
        op.create_index("ix_jobs_claim", "jobs", list(CLAIM_INDEX))
