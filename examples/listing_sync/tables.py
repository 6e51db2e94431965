"""The listing sync's own tables: host accounts, and per-listing daily metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from jobtrail.sql import UTCDateTime, create_engine  # jobtrail's SQLite/PostgreSQL settings

metadata = sa.MetaData()
accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("api_key", sa.String(200), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_sync_at", UTCDateTime()),
)
listing_metrics = sa.Table(
    "listing_metrics",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("listing_id", sa.String(100), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("listing_name", sa.String(200), nullable=False),
    sa.Column("views", sa.Integer, nullable=False),
    sa.Column("bookings", sa.Integer, nullable=False),
    sa.Column("revenue", sa.Float, nullable=False),
)


class Accounts:
    """Accounts and their metrics in the database at ``url`` (the tables are created if new)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        metadata.create_all(self.engine)

    def add(self, account_id: str, name: str, api_key: str) -> dict[str, Any] | None:
        """Save a new account; None if ``account_id`` is taken."""
        row = accounts.insert().values(
            account_id=account_id, name=name, api_key=api_key, created_at=datetime.now(UTC)
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(row)
        except sa.exc.IntegrityError:
            return None
        return self.get(account_id)

    def get(self, account_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            query = accounts.select().where(accounts.c.account_id == account_id)
            row = conn.execute(query).mappings().first()
        return None if row is None else dict(row)

    def active_ids(self, never_synced: bool = False) -> list[str]:
        query = sa.select(accounts.c.account_id).where(accounts.c.is_active)
        if never_synced:
            query = query.where(accounts.c.last_sync_at.is_(None))
        with self.engine.connect() as conn:
            return list(conn.scalars(query.order_by(accounts.c.account_id)))

    def save_listing(
        self, account_id: str, listing: Mapping[str, str], daily: Sequence[Mapping[str, Any]]
    ) -> None:
        """Replace one listing's daily rows and mark the account synced, in one transaction:
        a listing is never half written, and writing it again never duplicates a row."""
        key = (listing_metrics.c.account_id == account_id) & (
            listing_metrics.c.listing_id == listing["id"]
        )
        rows = [
            {
                "account_id": account_id,
                "listing_id": listing["id"],
                "listing_name": listing["name"],
                "date": date.fromisoformat(day["date"]),
                "views": day["views"],
                "bookings": day["bookings"],
                "revenue": day["revenue"],
            }
            for day in daily
        ]
        synced = accounts.update().where(accounts.c.account_id == account_id)
        with self.engine.begin() as conn:
            conn.execute(listing_metrics.delete().where(key))
            if rows:
                conn.execute(listing_metrics.insert(), rows)
            conn.execute(synced.values(last_sync_at=datetime.now(UTC)))
