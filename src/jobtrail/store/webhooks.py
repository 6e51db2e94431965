"""WebhookStore (``store.webhooks``): webhook subscriptions — created, read, changed, their
secrets rotated, disabled — and the deliveries of each (``store.webhooks.deliveries``)."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from jobtrail.exceptions import WebhookNotFound
from jobtrail.store.database import Database
from jobtrail.store.deliveries import DeliveryStore
from jobtrail.store.tables import webhook_subscriptions
from jobtrail.webhooks import NewSubscription, Subscription

s = webhook_subscriptions.c

CHANGEABLE = frozenset(
    {"url", "description", "event_types", "kinds", "queues", "labels", "allow_private", "enabled"}
)
"""What a PATCH may change (the owner and the secrets are not among them)."""


def subscription_of(row: Mapping[Any, Any]) -> Subscription:
    """The ``Subscription`` of a ``webhook_subscriptions`` row (never its secrets)."""
    return Subscription(
        id=row["id"],
        owner=row["owner"],
        url=row["url"],
        description=row["description"],
        event_types=row["event_types"],
        kinds=row["kinds"],
        queues=row["queues"],
        labels=row["labels"],
        allow_private=row["allow_private"],
        enabled=row["enabled"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
        previous_secret_until=row["previous_secret_until"],
    )


SHOWN = tuple(c for c in webhook_subscriptions.c if c.name not in ("secret", "previous_secret"))


class WebhookStore:
    """Subscriptions; ``owner`` arguments scope a call to one owner's (None: any)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.deliveries = DeliveryStore(database)

    def create(self, new: NewSubscription, secret: str) -> Subscription:
        """Store a new, enabled subscription signed with ``secret``."""
        now = self._db.clock()
        row = {
            "id": f"whs_{secrets.token_hex(12)}",
            "owner": new.owner,
            "url": new.url,
            "description": new.description,
            "event_types": _listed(new.event_types),
            "kinds": _listed(new.kinds),
            "queues": _listed(new.queues),
            "labels": None if new.labels is None else dict(new.labels),
            "secret": secret,
            "previous_secret": None,
            "previous_secret_until": None,
            "allow_private": new.allow_private,
            "enabled": True,
            "disabled_at": None,
            "disabled_reason": None,
            "created_at": now,
            "created_by": new.created_by,
            "updated_at": now,
        }
        with self._db.write() as conn:
            conn.execute(webhook_subscriptions.insert(), [row])
        return subscription_of(row)

    def get(self, subscription_id: str, owner: str | None = None) -> Subscription:
        """One subscription; ``WebhookNotFound`` if absent or not ``owner``'s."""
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(*SHOWN).where(s.id == subscription_id, *_scope(owner))
            ).one_or_none()
        if row is None:
            raise WebhookNotFound("webhook", subscription_id)
        return subscription_of(row._mapping)

    def list(
        self, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[Subscription]:
        """Subscriptions by id, those after ``after`` (keyset paging)."""
        query = sa.select(*SHOWN).where(*_scope(owner)).order_by(s.id).limit(limit)
        if after is not None:
            query = query.where(s.id > after)
        with self._db.read() as conn:
            return [subscription_of(r._mapping) for r in conn.execute(query)]

    def update(
        self, subscription_id: str, changes: Mapping[str, Any], owner: str | None = None
    ) -> Subscription:
        """Change what ``CHANGEABLE`` names; enabling clears the reason it was disabled."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {sorted(unknown)}")
        values = dict(changes) | {"updated_at": self._db.clock()}
        if changes.get("enabled") is True:
            values |= {"disabled_at": None, "disabled_reason": None}
        elif changes.get("enabled") is False:
            values |= {"disabled_at": values["updated_at"], "disabled_reason": "disabled by a user"}
        self._change(subscription_id, owner, values)
        return self.get(subscription_id, owner)

    def rotate(
        self, subscription_id: str, secret: str, overlap_until: datetime, owner: str | None = None
    ) -> Subscription:
        """Sign with ``secret`` from now on; the current secret signs too until
        ``overlap_until``, so receivers can switch without missing a delivery."""
        values = {
            "previous_secret": s.secret,
            "previous_secret_until": overlap_until,
            "secret": secret,
            "updated_at": self._db.clock(),
        }
        self._change(subscription_id, owner, values)
        return self.get(subscription_id, owner)

    def delete(self, subscription_id: str, owner: str | None = None) -> None:
        """Delete a subscription; its delivery log stays until retention removes it, and
        its pending deliveries are never sent."""
        with self._db.write() as conn:
            gone = conn.execute(
                webhook_subscriptions.delete().where(s.id == subscription_id, *_scope(owner))
            ).rowcount
        if not gone:
            raise WebhookNotFound("webhook", subscription_id)

    def disable(self, subscription_id: str, reason: str) -> None:
        """Stop delivering to a subscription that keeps failing (``reason`` says why)."""
        now = self._db.clock()
        values = {"enabled": False, "disabled_at": now, "disabled_reason": reason}
        with self._db.write() as conn:
            conn.execute(
                webhook_subscriptions.update()
                .where(s.id == subscription_id, s.enabled.is_(True))
                .values(**values, updated_at=now)
            )

    def disabled_since(self, at: datetime) -> builtins.list[Subscription]:
        """Subscriptions disabled at or after ``at`` and not enabled again, oldest first
        (what an alert about failing webhooks reads)."""
        query = (
            sa.select(*SHOWN)
            .where(s.enabled.is_(False), s.disabled_at >= at)
            .order_by(s.disabled_at, s.id)
        )
        with self._db.read() as conn:
            return [subscription_of(r._mapping) for r in conn.execute(query)]

    def _change(self, subscription_id: str, owner: str | None, values: Mapping[str, Any]) -> None:
        with self._db.write() as conn:
            changed = conn.execute(
                webhook_subscriptions.update()
                .where(s.id == subscription_id, *_scope(owner))
                .values(**values)
            ).rowcount
        if not changed:
            raise WebhookNotFound("webhook", subscription_id)


def _scope(owner: str | None) -> builtins.list[sa.ColumnElement[bool]]:
    return [] if owner is None else [s.owner == owner]


def _listed(values: Any) -> builtins.list[Any] | None:
    return None if values is None else list(values)
