"""DeliveryStore (``store.webhooks.deliveries``): the outbox fanned out into one delivery per
matching subscription, deliveries claimed by exactly one courier under a lease and in order
per job, their attempts recorded, replayed, listed and purged."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail.exceptions import WebhookNotFound
from jobtrail.jobs import JSON, Job
from jobtrail.store.database import Database
from jobtrail.store.rows import JOB_COLUMNS, job_from_row
from jobtrail.store.tables import (
    job_events,
    jobs,
    webhook_attempts,
    webhook_deliveries,
    webhook_outbox,
    webhook_subscriptions,
)
from jobtrail.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Outgoing,
    Sent,
    Subscription,
    announced_type,
)

d = webhook_deliveries.c
s = webhook_subscriptions.c
PENDING = DeliveryStatus.PENDING.value
FAN_OUT_BATCH = 200

Document = Callable[[Job], JSON]
"""The job as a delivery shows it (the API's document, redacted): the courier's."""


class DeliveryStore:
    """Deliveries and their attempts; ``owner`` arguments scope a call to the deliveries of
    one owner's subscriptions (None: any)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def fan_out(self, document: Document, limit: int = FAN_OUT_BATCH) -> int:
        """Turn the oldest outbox rows into deliveries, one per enabled subscription that
        matches; returns how many deliveries it made.

        The deliveries are prepared in a read (building job documents holds no write lock),
        then written in the transaction that deletes their outbox rows: only the rows this
        call deleted are written, so two couriers never fan one row out twice.
        """
        from jobtrail.store.webhooks import SHOWN, subscription_of

        with self._db.read() as conn:  # no write lock, no commit while idle
            query = sa.select(webhook_outbox).order_by(webhook_outbox.c.id).limit(limit)
            taken = conn.execute(query).all()
            if not taken:
                return 0
            enabled = conn.execute(sa.select(*SHOWN).where(s.enabled.is_(True)))
            subscriptions = [subscription_of(r._mapping) for r in enabled]
            prepared = _deliveries(conn, self._db.clock(), taken, subscriptions, document)
        o = webhook_outbox.c
        with self._db.write() as conn:
            ids = [t.id for t in taken]
            deleted = conn.execute(webhook_outbox.delete().where(o.id.in_(ids)).returning(o.id))
            mine = set(deleted.scalars())
            rows = [row for outbox_id, row in prepared if outbox_id in mine]
            if rows:
                conn.execute(webhook_deliveries.insert(), rows)
        return len(rows)

    def claim_due(self, limit: int, lease_seconds: float) -> list[Outgoing]:
        """Take up to ``limit`` due deliveries of enabled subscriptions for ``lease_seconds``.

        A delivery is due once its time came, no live lease holds it, and no earlier
        delivery of the same job to the same subscription is still pending (order per job).
        On PostgreSQL rows another courier is claiming are skipped (``SKIP LOCKED``); on
        SQLite the write lock serialises claims.
        """
        now = self._db.clock()
        lease = secrets.token_hex(16)
        with self._db.read() as conn:  # a read first: no write lock, no commit while idle
            if conn.execute(_due(now).limit(1)).first() is None:
                return []
        with self._db.write() as conn:
            query = _due(now).limit(limit)
            if self._db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True, of=webhook_deliveries)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            until = now + timedelta(seconds=lease_seconds)
            conn.execute(
                webhook_deliveries.update()
                .where(d.id.in_(ids))
                .values(locked_until=until, lease=lease)
            )
            rows = conn.execute(
                sa.select(webhook_deliveries, s.url, s.secret, s.previous_secret)
                .add_columns(s.previous_secret_until, s.allow_private)
                .join(webhook_subscriptions, s.id == d.subscription_id)
                .where(d.id.in_(ids))
                .order_by(d.next_attempt_at, d.event_id)
            ).all()
        return [_outgoing(r._mapping, lease, now) for r in rows]

    def record_attempt(
        self,
        outgoing: Outgoing,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Record one try and its consequence — ``delivered``; ``pending`` again at
        ``next_attempt_at``; or ``failed``, which disables the subscription — unless the lease
        was lost meanwhile (False: another courier holds the delivery now)."""
        return self.record([Sent(outgoing, attempt, status, next_attempt_at)])[0]

    def record(self, sent: Sequence[Sent], unsent: Sequence[Outgoing] = ()) -> list[bool]:
        """``record_attempt`` for several tries, in one transaction (a courier's batch), and
        hand back the claimed deliveries it did not try (``unsent``), due again at once."""
        if not sent and not unsent:
            return []
        with self._db.write() as conn:
            for outgoing in unsent:
                conn.execute(
                    webhook_deliveries.update()
                    .where(d.id == outgoing.delivery.id, d.lease == outgoing.lease)
                    .values(locked_until=None, lease=None)
                )
            return [_record(conn, one) for one in sent]

    def replay(self, delivery_id: str, owner: str | None = None) -> Delivery:
        """Send a delivered or failed delivery again, with the same ``webhook-id`` and body
        (a pending one is left as it is: it is on its way)."""
        now = self._db.clock()
        self.get(delivery_id, owner)
        with self._db.write() as conn:
            conn.execute(
                webhook_deliveries.update()
                .where(d.id == delivery_id, d.status != PENDING)
                .values(status=PENDING, next_attempt_at=now, retry_from=now)
                .values(locked_until=None, lease=None)
            )
        return self.get(delivery_id, owner)

    def get(self, delivery_id: str, owner: str | None = None) -> Delivery:
        """One delivery with its attempts; ``WebhookNotFound`` if absent or not ``owner``'s."""
        found = self._listed(sa.and_(d.id == delivery_id), owner, limit=1, tries=True)
        if not found:
            raise WebhookNotFound("delivery", delivery_id)
        return found[0]

    def of_subscription(
        self, subscription_id: str, before: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """A subscription's deliveries, newest first; those older than ``before`` (an id)."""
        where = d.subscription_id == subscription_id
        if before is not None:
            mark = sa.select(d.created_at).where(d.id == before).scalar_subquery()
            older = sa.or_(d.created_at < mark, sa.and_(d.created_at == mark, d.id < before))
            where = sa.and_(where, older)
        order = (d.created_at.desc(), d.id.desc())
        return self._listed(where, None, limit, tries=False, order=order)

    def of_job(self, job_id: str, owner: str | None = None, limit: int = 200) -> list[Delivery]:
        """A job's deliveries in event order, each with its attempts (the delivery log)."""
        return self._listed(d.job_id == job_id, owner, limit, tries=True)

    def purge(self, before: datetime, batch: int = 1000) -> int:
        """Delete finished deliveries created before ``before`` (and those of deleted
        subscriptions), with their attempts; returns how many deliveries went."""
        gone = sa.and_(
            d.created_at < before,
            sa.or_(d.status != PENDING, d.subscription_id.not_in(sa.select(s.id))),
        )
        with self._db.write() as conn:
            ids = list(conn.execute(sa.select(d.id).where(gone).limit(batch)).scalars())
            if ids:
                a = webhook_attempts.c
                conn.execute(webhook_attempts.delete().where(a.delivery_id.in_(ids)))
                conn.execute(webhook_deliveries.delete().where(d.id.in_(ids)))
        return len(ids)

    def _listed(
        self,
        where: sa.ColumnElement[bool],
        owner: str | None,
        limit: int,
        tries: bool,
        order: Sequence[sa.ColumnElement[Any]] = (d.event_id, d.id),
    ) -> list[Delivery]:
        query = sa.select(webhook_deliveries).where(where).order_by(*order).limit(limit)
        if owner is not None:
            query = query.join(webhook_subscriptions, s.id == d.subscription_id).where(
                s.owner == owner
            )
        with self._db.read() as conn:
            rows = [r._mapping for r in conn.execute(query)]
            attempts = _attempts(conn, [r["id"] for r in rows]) if tries else {}
        return [_delivery(r, attempts.get(r["id"], [])) for r in rows]


def _record(conn: sa.Connection, sent: Sent) -> bool:
    delivery, attempt, status = sent.outgoing.delivery, sent.attempt, sent.status
    values: dict[str, Any] = {
        "status": status.value,
        "attempts": d.attempts + 1,
        "locked_until": None,
        "lease": None,
        "last_error": attempt.error,
    }
    if status is DeliveryStatus.DELIVERED:
        values["delivered_at"] = attempt.at
    if sent.next_attempt_at is not None:
        values["next_attempt_at"] = sent.next_attempt_at
    held = (d.id == delivery.id, d.lease == sent.outgoing.lease, d.status == PENDING)
    if not conn.execute(webhook_deliveries.update().where(*held).values(values)).rowcount:
        return False
    conn.execute(webhook_attempts.insert(), [_attempt_row(delivery.id, attempt)])
    if status is DeliveryStatus.FAILED:
        reason = f"delivery {delivery.id} kept failing: {attempt.error}"
        conn.execute(
            webhook_subscriptions.update()
            .where(s.id == delivery.subscription_id, s.enabled.is_(True))
            .values(enabled=False, disabled_at=attempt.at, disabled_reason=reason)
            .values(updated_at=attempt.at)
        )
    return True


def _due(now: datetime) -> sa.Select[Any]:
    earlier = webhook_deliveries.alias("earlier")
    e = earlier.c
    blocked = (
        sa.select(sa.literal(1))
        .where(
            e.subscription_id == d.subscription_id,
            e.job_id == d.job_id,
            e.status == PENDING,
            e.event_id < d.event_id,
        )
        .exists()
    )
    return (
        sa.select(d.id)
        .join(webhook_subscriptions, s.id == d.subscription_id)
        .where(
            d.status == PENDING,
            d.next_attempt_at <= now,
            sa.or_(d.locked_until.is_(None), d.locked_until < now),
            s.enabled.is_(True),
            ~blocked,
        )
        .order_by(d.next_attempt_at, d.event_id)
    )


def _deliveries(
    conn: sa.Connection,
    now: datetime,
    taken: Sequence[sa.Row[Any]],
    subscriptions: list[Subscription],
    document: Document,
) -> list[tuple[int, dict[str, Any]]]:
    """The delivery rows of outbox rows ``taken`` (with the outbox row each comes from): the
    job as it is now in each payload."""
    if not subscriptions:
        return []
    events, rows = _sources(conn, taken)
    made: list[tuple[int, dict[str, Any]]] = []
    documents: dict[str, JSON] = {}
    for outbox in taken:
        event, job = events.get(outbox.event_id), rows.get(outbox.job_id)
        type_ = None if event is None else announced_type(event.type, event.data)
        if event is None or job is None or type_ is None:
            continue  # purged meanwhile
        for subscription in subscriptions:
            if not subscription.matches(type_, job):
                continue
            if outbox.job_id not in documents:
                documents[outbox.job_id] = document(job_from_row(job, now))
            row = _delivery_row(subscription.id, event, type_, documents[job["id"]], now)
            made.append((outbox.id, row))
    return made


def _sources(
    conn: sa.Connection, taken: Sequence[sa.Row[Any]]
) -> tuple[dict[int, Any], dict[str, Mapping[Any, Any]]]:
    """The events and the jobs (as rows) the outbox rows ``taken`` name, by id."""
    ev = job_events.c
    wanted = [t.event_id for t in taken]
    query = sa.select(ev.id, ev.type, ev.at, ev.message, ev.data).where(ev.id.in_(wanted))
    events = {r.id: r for r in conn.execute(query)}
    job_ids = {t.job_id for t in taken}
    jobs_query = sa.select(*JOB_COLUMNS).where(jobs.c.id.in_(job_ids))
    return events, {r.id: dict(r._mapping) for r in conn.execute(jobs_query)}


def _delivery_row(
    subscription_id: str, event: Any, type_: str, job: JSON, now: datetime
) -> dict[str, Any]:
    at = event.at.isoformat()
    payload = {
        "type": type_,
        "timestamp": at,
        "data": {
            "event": {"id": event.id, "type": event.type, "at": at, "message": event.message},
            "job": job,
        },
    }
    return {
        "id": f"msg_{secrets.token_hex(12)}",
        "subscription_id": subscription_id,
        "job_id": job["id"],
        "event_id": event.id,
        "type": type_,
        "payload": payload,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "locked_until": None,
        "lease": None,
        "created_at": now,
        "retry_from": now,
        "delivered_at": None,
        "last_error": None,
    }


def _outgoing(row: Mapping[Any, Any], lease: str, now: datetime) -> Outgoing:
    keys = [row["secret"]]
    until = row["previous_secret_until"]
    if row["previous_secret"] and until is not None and until > now:
        keys.append(row["previous_secret"])
    return Outgoing(
        delivery=_delivery(row, []),
        lease=lease,
        url=row["url"],
        secrets=tuple(keys),
        allow_private=row["allow_private"],
        retry_from=row["retry_from"],
    )


def _delivery(row: Mapping[Any, Any], tries: list[Attempt]) -> Delivery:
    return Delivery(
        id=row["id"],
        subscription_id=row["subscription_id"],
        job_id=row["job_id"],
        event_id=row["event_id"],
        type=row["type"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        payload=row["payload"],
        tries=tries,
    )


def _attempts(conn: sa.Connection, ids: list[str]) -> dict[str, list[Attempt]]:
    a = webhook_attempts.c
    found: dict[str, list[Attempt]] = {i: [] for i in ids}
    if ids:
        query = sa.select(webhook_attempts).where(a.delivery_id.in_(ids)).order_by(a.id)
        for r in conn.execute(query):
            found[r.delivery_id].append(
                Attempt(r.at, r.status_code, r.duration, r.error, r.response)
            )
    return found


def _attempt_row(delivery_id: str, attempt: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "at": attempt.at,
        "status_code": attempt.status_code,
        "duration": attempt.duration,
        "error": attempt.error,
        "response": attempt.response,
    }
