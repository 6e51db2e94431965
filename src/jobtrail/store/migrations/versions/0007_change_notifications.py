"""PostgreSQL: notify ``jobtrail_changes`` once per transaction that inserted or updated jobs,
so idle workers and open streams in other processes wake at once instead of at their next
poll. (SQLite needs no schema for it: its watchers read ``PRAGMA data_version``.)

Statement triggers with a transition table notify only when rows changed: an empty claim
(an UPDATE of no rows) must not wake every idle worker again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

EVENTS = ("INSERT", "UPDATE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION jobtrail_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM changed) THEN
                PERFORM pg_notify('jobtrail_changes', '');
            END IF;
            RETURN NULL;
        END $$
        """
    )
    for event in EVENTS:
        op.execute(
            f"CREATE TRIGGER jobtrail_jobs_{event.lower()} AFTER {event} ON jobs "
            "REFERENCING NEW TABLE AS changed FOR EACH STATEMENT "
            "EXECUTE FUNCTION jobtrail_notify_changes()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in EVENTS:
        op.execute(f"DROP TRIGGER jobtrail_jobs_{event.lower()} ON jobs")
    op.execute("DROP FUNCTION jobtrail_notify_changes()")
