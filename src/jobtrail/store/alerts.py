"""AlertStore: alert rules, the alerts they raised and their notifications, the lease of the one
evaluating process, and the bounded history of all three."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobtrail.alerts import Alert, AlertPage, AlertRule, AlertRuleInfo
from jobtrail.channels import channel_label
from jobtrail.jobs import JSON
from jobtrail.store.database import Database
from jobtrail.store.tables import alert_notifications, alert_rules, alerts, leases

r, a, n = alert_rules.c, alerts.c, alert_notifications.c

FIRING, RESOLVED = "firing", "resolved"
PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class StoredRule:
    """A rule as the evaluator reads it: the rule, where it came from and its cursor."""

    rule: AlertRule
    source: str
    cursor: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    """When the definition was last saved: where a rule without a cursor starts reading."""


@dataclass(frozen=True)
class Note:
    """A message to write for one channel of an alert's rule."""

    channel_index: int
    what: str
    """``firing``, ``update`` or ``resolved``."""
    title: str
    body: str


@dataclass
class AlertWrite:
    """A change to one alert: new (``alert_id`` None) or to an open one, and its messages."""

    alert_id: int | None
    scope_key: str
    values: dict[str, Any]
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """A notification due to be sent."""

    id: int
    rule: str
    channel_index: int
    channel: str
    title: str
    body: str
    attempts: int


class AlertStore:
    """Rules, alerts and notifications shared by every process on the store."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # -- rules ---------------------------------------------------------------------------

    def save_rule(self, rule: AlertRule, source: str) -> None:
        """Insert or replace a rule's definition (keeping its creation time, and its cursor
        unless the condition changed)."""
        now = self._db.clock()
        definition: dict[str, Any] = {
            "source": source,
            "condition": rule.condition,
            "params": dict(rule.params),
            "scope": rule.scope,
            "channels": list(rule.channels),
            "enabled": rule.enabled,
            "updated_at": now,
        }
        insert = self._db.insert(alert_rules).values(name=rule.name, created_at=now, **definition)
        # A rule watching another condition reads afresh, from now (its cursor meant the old).
        same = r.condition == insert.excluded.condition
        changes = definition | {"cursor": sa.case((same, r.cursor), else_=sa.null())}
        with self._db.write() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=changes))

    def rules(self) -> list[StoredRule]:
        """The enabled rules, by name, with their channel URLs (for the evaluator only)."""
        stmt = sa.select(alert_rules).where(r.enabled.is_(True)).order_by(r.name)
        with self._db.read() as conn:
            return [_stored(row._mapping) for row in conn.execute(stmt)]

    def rule_infos(self) -> list[AlertRuleInfo]:
        """Every rule by name as shown: channels as labels only."""
        with self._db.read() as conn:
            rows = conn.execute(sa.select(alert_rules).order_by(r.name)).all()
        return [_info(row._mapping) for row in rows]

    def delete_rule(self, name: str) -> bool:
        """Delete a rule and close its open alerts (no message); False if there was none."""
        with self._db.write() as conn:
            conn.execute(
                alerts.update()
                .where(a.rule == name, a.status == FIRING)
                .values(status=RESOLVED, open_key=None, resolved_at=self._db.clock())
            )
            return bool(conn.execute(alert_rules.delete().where(r.name == name)).rowcount)

    def channel(self, rule: str, index: int) -> str | None:
        """The URL of a rule's channel ``index``, or None (the rule or channel is gone)."""
        with self._db.read() as conn:
            found = conn.execute(sa.select(r.channels).where(r.name == rule)).scalar()
        return found[index] if isinstance(found, list) and 0 <= index < len(found) else None

    # -- the evaluator's lease -----------------------------------------------------------

    def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds``: True if ``holder`` holds it (it
        held it, or the last holder let it lapse)."""
        now = self._db.clock()
        until = now + timedelta(seconds=seconds)
        take = (
            leases.update()
            .where(leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.until < now))
            .values(holder=holder, until=until)
        )
        with self._db.write() as conn:
            if conn.execute(take).rowcount == 1:
                return True
            first = self._db.insert(leases).values(name=name, holder=holder, until=until)
            taken = first.on_conflict_do_nothing().returning(leases.c.name)
            return conn.execute(taken).first() is not None

    # -- alerts --------------------------------------------------------------------------

    def open_alerts(self, rule: str) -> dict[str, Alert]:
        """The firing alerts of ``rule`` by scope key."""
        stmt = sa.select(alerts).where(a.rule == rule, a.status == FIRING)
        with self._db.read() as conn:
            return {row.scope_key: _alert(row._mapping) for row in conn.execute(stmt)}

    def apply(self, rule: str, writes: Sequence[AlertWrite], cursor: dict[str, Any] | None) -> int:
        """Write the alerts' changes, their notifications and the rule's cursor in one
        transaction; returns how many notifications were written."""
        now = self._db.clock()
        notes = 0
        with self._db.write() as conn:
            labels = _labels(conn, rule)
            for write in writes:
                alert_id = self._write_alert(conn, rule, write)
                rows = [_note_row(alert_id, note, labels, now) for note in write.notes]
                if rows:
                    conn.execute(alert_notifications.insert(), rows)
                notes += len(rows)
            if cursor is not None:
                conn.execute(alert_rules.update().where(r.name == rule).values(cursor=cursor))
        return notes

    def _write_alert(self, conn: sa.Connection, rule: str, write: AlertWrite) -> int:
        if write.alert_id is not None:
            conn.execute(alerts.update().where(a.id == write.alert_id).values(**write.values))
            return write.alert_id
        values = {"rule": rule, "scope_key": write.scope_key, "status": FIRING}
        values["open_key"] = f"{rule}|{write.scope_key}"
        stmt = alerts.insert().values(**values, **write.values).returning(a.id)
        return int(conn.execute(stmt).scalar_one())

    def page(
        self, *, rule: str | None, status: str | None, before: int | None, limit: int
    ) -> AlertPage:
        """Alerts newest first (``rule``'s, in ``status``, older than id ``before``)."""
        stmt = sa.select(alerts).order_by(a.id.desc()).limit(limit + 1)
        for column, value in ((a.rule, rule), (a.status, status)):
            if value is not None:
                stmt = stmt.where(column == value)
        if before is not None:
            stmt = stmt.where(a.id < before)
        with self._db.read() as conn:
            found = [_alert(row._mapping) for row in conn.execute(stmt)]
        more = len(found) > limit
        return AlertPage(found[:limit], found[limit - 1].id if more else None)

    # -- notifications -------------------------------------------------------------------

    def due(self, limit: int = 50) -> list[Pending]:
        """Pending notifications whose time has come, oldest first."""
        stmt = (
            sa.select(n.id, a.rule, n.channel_index, n.channel, n.title, n.body, n.attempts)
            .join(alerts, a.id == n.alert_id)
            .where(n.status == PENDING, n.next_attempt_at <= self._db.clock())
            .order_by(n.next_attempt_at, n.id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [Pending(*row) for row in conn.execute(stmt)]

    def next_due_at(self) -> datetime | None:
        """When the next pending notification is due (None: nothing pending)."""
        stmt = sa.select(sa.func.min(n.next_attempt_at)).where(n.status == PENDING)
        with self._db.read() as conn:
            found: datetime | None = conn.execute(stmt).scalar()
        return found

    def claim(self, notification_id: int, seconds: float) -> bool:
        """Take a due notification for ``seconds`` (the time a send may take): no other
        process sends it meanwhile. False if another took it first."""
        now = self._db.clock()
        stmt = (
            alert_notifications.update()
            .where(n.id == notification_id, n.status == PENDING, n.next_attempt_at <= now)
            .values(next_attempt_at=now + timedelta(seconds=seconds), attempts=n.attempts + 1)
        )
        with self._db.write() as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def sent(self, notification_id: int) -> None:
        """Record a notification sent."""
        values = {"status": SENT, "sent_at": self._db.clock(), "error": None}
        self._set(notification_id, values)

    def attempt_failed(self, notification_id: int, error: str, retry_in: float | None) -> None:
        """Record a failed attempt: retried in ``retry_in`` seconds, or (None) given up."""
        values: dict[str, Any] = {"error": error[:1000]}
        if retry_in is None:
            values["status"] = FAILED
        else:
            values["next_attempt_at"] = self._db.clock() + timedelta(seconds=retry_in)
        self._set(notification_id, values)

    def _set(self, notification_id: int, values: dict[str, Any]) -> None:
        with self._db.write() as conn:
            conn.execute(alert_notifications.update().where(n.id == notification_id), values)

    def notifications(self, alert_id: int) -> list[dict[str, Any]]:
        """An alert's notifications, oldest first (channels as labels)."""
        columns = [n.id, n.channel, n.what, n.status, n.attempts, n.error, n.created_at, n.sent_at]
        stmt = sa.select(*columns).where(n.alert_id == alert_id).order_by(n.id)
        with self._db.read() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    def purge(self, older_than: timedelta) -> int:
        """Delete alerts resolved, and notifications sent or given up, before ``older_than``
        ago; returns how many alerts went."""
        before = self._db.clock() - older_than
        gone = sa.select(a.id).where(a.status == RESOLVED, a.resolved_at < before)
        with self._db.write() as conn:
            done = n.status.in_([SENT, FAILED]) & (n.created_at < before)
            conn.execute(alert_notifications.delete().where(done | n.alert_id.in_(gone)))
            return int(conn.execute(alerts.delete().where(a.id.in_(gone))).rowcount)


def _labels(conn: sa.Connection, rule: str) -> list[str]:
    channels = conn.execute(sa.select(r.channels).where(r.name == rule)).scalar() or []
    return [channel_label(url) for url in channels]


def _note_row(alert_id: int, note: Note, labels: list[str], now: datetime) -> dict[str, Any]:
    index = note.channel_index
    return {
        "alert_id": alert_id,
        "channel_index": index,
        "channel": labels[index] if index < len(labels) else "removed://…",
        "what": note.what,
        "title": note.title,
        "body": note.body,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _rule(row: Any) -> AlertRule:
    scope: dict[str, JSON] = row["scope"] or {}
    labels = scope.get("labels") or {}
    return AlertRule(
        name=row["name"],
        condition=row["condition"],
        channels=tuple(row["channels"]),
        params=dict(row["params"] or {}),
        kind=_str(scope.get("kind")),
        queue=_str(scope.get("queue")),
        owner=_str(scope.get("owner")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        enabled=bool(row["enabled"]),
    )


def _str(value: JSON) -> str | None:
    return value if isinstance(value, str) else None


def _stored(row: Any) -> StoredRule:
    return StoredRule(
        _rule(row), row["source"], row["cursor"], row["created_at"], row["updated_at"]
    )


def _info(row: Any) -> AlertRuleInfo:
    rule = _rule(row)
    return AlertRuleInfo(
        name=rule.name,
        source=row["source"],
        condition=rule.condition,
        params=dict(rule.params),
        scope=rule.scope,
        channels=[channel_label(url) for url in rule.channels],
        enabled=rule.enabled,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _alert(row: Any) -> Alert:
    fields = {name: row[name] for name in Alert.__dataclass_fields__}
    fields["job_ids"] = list(fields["job_ids"] or [])
    return Alert(**fields)
