"""Subscriptions (``tracker.webhooks``): subscribing programs to job events — their input
checked, their URL vetted, their secret made and shown once — and the delivery log, for the
edges and applications."""

from __future__ import annotations

import base64
import builtins
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobtrail.destinations import vet
from jobtrail.exceptions import NotAllowed, WebhookRefused
from jobtrail.jobs import JSON
from jobtrail.webhooks import EVENT_TYPES, Delivery, NewSubscription, Subscription

if TYPE_CHECKING:
    from jobtrail.settings import Settings
    from jobtrail.store.database import Clock
    from jobtrail.store.webhooks import WebhookStore

MAX_FILTER_ENTRIES = 50
"""Most kinds, queues or event types one subscription may list."""
MAX_LABELS = 20
"""Most labels one subscription may require (as ``filters.py`` allows a listing)."""
MAX_NAME_CHARS = 200


def new_secret() -> str:
    """A signing secret as Standard Webhooks libraries take it: ``whsec_`` + base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Webhooks:
    """Subscriptions and their deliveries; ``owner`` scopes a call to one owner's (an owner
    token's), None reaches every subscription (an admin's)."""

    def __init__(self, store: WebhookStore, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock

    def subscribe(
        self,
        url: str,
        *,
        owner: str | None = None,
        event_types: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        queues: Iterable[str] | None = None,
        labels: Mapping[str, JSON] | None = None,
        description: str | None = None,
        allow_private: bool = False,
        actor: str | None = None,
    ) -> tuple[Subscription, str]:
        """Subscribe ``url`` to job events (``owner``'s jobs only, when given); returns the
        subscription and its secret, which is never shown again. ``WebhookRefused`` for a URL
        that resolves to an internal address (unless allowed) or filters that are not
        understood."""
        new = NewSubscription(
            url=url,
            owner=owner,
            description=description,
            event_types=checked_types(event_types),
            kinds=checked_names("kinds", kinds),
            queues=checked_names("queues", queues),
            labels=checked_labels(labels),
            allow_private=allow_private,
            created_by=actor,
        )
        new = replace(new, url=self._vetted(url, allow_private))  # last: it resolves the name
        secret = new_secret()
        return self._store.create(new, secret), secret

    def get(self, subscription_id: str, owner: str | None = None) -> Subscription:
        """One subscription (``WebhookNotFound`` if absent or not ``owner``'s)."""
        return self._store.get(subscription_id, owner)

    def list(
        self, owner: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[Subscription]:
        """Subscriptions by id, after ``after``."""
        return self._store.list(owner, after, limit)

    def update(
        self, subscription_id: str, changes: Mapping[str, Any], owner: str | None = None
    ) -> Subscription:
        """Change a subscription's URL, description, filters, ``enabled`` or (an admin only:
        ``owner`` None) ``allow_private``, each checked as at creation."""
        current = self._store.get(subscription_id, owner)
        values = dict(changes)
        if "allow_private" in values and owner is not None:
            raise NotAllowed("only an admin may allow private addresses")
        allow = bool(values.get("allow_private", current.allow_private))
        if "url" in values or "allow_private" in values:
            values["url"] = self._vetted(values.get("url", current.url), allow)
        checks = {"event_types": checked_types, "labels": checked_labels}
        for name, value in values.items():
            if name in checks:
                values[name] = checks[name](value)
            elif name in ("kinds", "queues"):
                values[name] = checked_names(name, value)
        return self._store.update(subscription_id, values, owner)

    def delete(self, subscription_id: str, owner: str | None = None) -> None:
        """Delete a subscription (its delivery log stays until retention purges it)."""
        self._store.delete(subscription_id, owner)

    def rotate(self, subscription_id: str, owner: str | None = None) -> tuple[Subscription, str]:
        """A new secret, returned once; the old one signs beside it for
        ``webhook_rotation_overlap`` seconds."""
        secret = new_secret()
        until = self._clock() + timedelta(seconds=self._settings.webhook_rotation_overlap)
        return self._store.rotate(subscription_id, secret, until, owner), secret

    def deliveries(
        self,
        subscription_id: str,
        owner: str | None = None,
        before: str | None = None,
        limit: int = 50,
    ) -> builtins.list[Delivery]:
        """A subscription's deliveries, newest first (``before``: a delivery id)."""
        self._store.get(subscription_id, owner)
        return self._store.deliveries.of_subscription(subscription_id, before, limit)

    def job_deliveries(self, job_id: str, owner: str | None = None) -> builtins.list[Delivery]:
        """A job's delivery log: every delivery in event order, with its attempts."""
        return self._store.deliveries.of_job(job_id, owner)

    def replay(self, delivery_id: str, owner: str | None = None) -> Delivery:
        """Send a delivery again, same ``webhook-id`` and body, as soon as a courier can."""
        return self._store.deliveries.replay(delivery_id, owner)

    def disabled_since(self, at: datetime) -> builtins.list[Subscription]:
        """Subscriptions disabled (by failing) at or after ``at`` and still disabled."""
        return self._store.disabled_since(at)

    def _vetted(self, url: str, allow_private: bool) -> str:
        return vet(url, allow_private or self._settings.webhook_allow_private).url


def checked_types(types: Iterable[str] | None) -> builtins.list[str] | None:
    """Event types a subscription asks for (``job.failed`` or ``failed``), each known."""
    listed = checked_names("event_types", types)
    if listed is None:
        return None
    named = [t if t.startswith("job.") else f"job.{t}" for t in listed]
    unknown = [t for t in named if t not in EVENT_TYPES]
    if unknown:
        raise WebhookRefused(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(named))


def checked_names(field: str, names: Iterable[str] | None) -> builtins.list[str] | None:
    """A filter's list of names: at most ``MAX_FILTER_ENTRIES`` strings, none empty."""
    if names is None:
        return None
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise WebhookRefused(f"{field} must be a list of names")
    listed: Sequence[Any] = list(names)
    if len(listed) > MAX_FILTER_ENTRIES:
        raise WebhookRefused(f"{field} lists more than {MAX_FILTER_ENTRIES} entries")
    for name in listed:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or "\x00" in name:
            raise WebhookRefused(f"{field} holds {name!r}: not a name")
    return list(listed)


def checked_labels(labels: Mapping[str, JSON] | None) -> dict[str, JSON] | None:
    """Labels a job must have: at most ``MAX_LABELS``, scalar values."""
    if labels is None:
        return None
    if not isinstance(labels, Mapping):
        raise WebhookRefused("labels must be an object")
    if len(labels) > MAX_LABELS:
        raise WebhookRefused(f"more than {MAX_LABELS} labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not 0 < len(key) <= 100 or "\x00" in key:
            raise WebhookRefused(f"label key {key!r}: not a name")
        if not isinstance(value, str | int | float | bool) or len(str(value)) > 200:
            raise WebhookRefused(f"label {key!r}: a value must be a short string or number")
    return dict(labels)
