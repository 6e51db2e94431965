"""Failed items indexed by job and id, the order they are read in: a page of a job's failed
items (``WHERE job_id = ? AND id > ? ORDER BY id LIMIT n``) and their count read the index
instead of sorting every item of the job. No query looks items up by ``item_id``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_items_job_id_id", "job_items", ["job_id", "id"])
    op.drop_index("ix_job_items_job_id_item_id", "job_items")


def downgrade() -> None:
    op.create_index("ix_job_items_job_id_item_id", "job_items", ["job_id", "item_id"])
    op.drop_index("ix_job_items_job_id_id", "job_items")
