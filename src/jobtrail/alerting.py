"""Alerting: the one evaluator across processes (by a lease) of every alert rule — an alert
fires once per rule and scope, is grouped while it keeps firing, resolves when its condition
clears — writing the notifications its ``Notifier`` then sends."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from jobtrail.alert_conditions import CONDITIONS, Evaluation, Look, Occurrence
from jobtrail.alerts import RECENT_JOBS, Alert, AlertRule
from jobtrail.exceptions import StoreError
from jobtrail.jobs import ScheduleInfo
from jobtrail.logs import logger
from jobtrail.notifier import Notifier
from jobtrail.store.alerts import AlertWrite, Note, StoredRule

if TYPE_CHECKING:
    from jobtrail.runtime import Runtime
    from jobtrail.settings import Settings
    from jobtrail.store import Store

log = logger("jobtrail.alerts")

LEASE = "alerts"
PURGE_EVERY = 3600.0
"""Seconds between two purges of the alert history by the evaluator."""


@dataclass
class Alerting:
    """Evaluates the stored rules every ``alert_interval`` while this process holds the lease;
    ``rules`` are the ones declared in code, stored (source ``code``) at the first turn."""

    store: Store
    settings: Settings
    rules: Callable[[], list[AlertRule]]
    holder: str
    notifier: Notifier
    _registered: bool = False
    _purged_at: float = 0.0

    @classmethod
    def of(cls, runtime: Runtime, holder: str) -> Alerting:
        """The evaluator of ``runtime``'s store, for the process named ``holder``."""
        store = runtime.store
        notifier = Notifier(store.alerts, store.database.outage)
        return cls(
            store,
            runtime.settings,
            lambda: list(runtime.registry.alerts.values()),
            holder,
            notifier,
        )

    def register(self) -> None:
        """Store the rules declared in code (replacing their earlier definitions)."""
        for rule in self.rules():
            self.store.alerts.save_rule(rule, "code")
        self._registered = True

    def evaluate(self) -> int:
        """One turn: if this process holds the lease, evaluate every enabled rule and wake the
        notifier for what was written; returns how many notifications were written."""
        if not self._registered:
            self.register()
        rules = self.store.alerts.rules()
        if not rules:  # nothing to watch: no lease taken, no write made
            return 0
        lease = max(10.0, 5 * self.settings.alert_interval)
        if not self.store.alerts.take_lease(LEASE, self.holder, lease):
            return 0
        written = sum(self._evaluate(stored) for stored in rules)
        self.notifier.start()
        if written:
            self.notifier.wake()
        self._purge()
        return written

    def stop(self) -> None:
        """Stop the notifier (after the send it is in, if any)."""
        self.notifier.stop()

    def _evaluate(self, stored: StoredRule) -> int:
        condition = CONDITIONS.get(stored.rule.condition)
        if condition is None:  # a condition this version does not know (a newer writer's)
            return 0
        now = self.store.clock()
        disabled = self.store.webhooks.disabled_since
        look = Look(
            self.store.alert_reads, self._schedules, disabled, now, self.settings.public_url
        )
        try:
            open_alerts = self.store.alerts.open_alerts(stored.rule.name)
            evaluation = condition(look, stored, open_alerts)
            writes = plan(stored.rule, evaluation, open_alerts, now)
            if not writes and evaluation.cursor is None:
                return 0
            return self.store.alerts.apply(stored.rule.name, writes, evaluation.cursor)
        except StoreError:
            raise  # an outage: the maintenance logs it once, not once per rule and turn
        except Exception as exc:  # one broken rule must not silence the others
            log.warning("alert rule failed", rule=stored.rule.name, error=str(exc))
            return 0

    def _schedules(self) -> list[ScheduleInfo]:
        return self.store.schedules.list_all(recent=20)

    def _purge(self) -> None:
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        days = self.settings.alert_retention_days
        gone = self.store.alerts.purge(timedelta(days=days))
        if gone:
            log.info("purged resolved alerts", count=gone)


def plan(
    rule: AlertRule, evaluation: Evaluation, open_alerts: dict[str, Alert], now: datetime
) -> list[AlertWrite]:
    """The changes one evaluation makes: new alerts, counts grown (a message at most once per
    group window), resolved alerts — each with its messages."""
    writes: list[AlertWrite] = []
    for scope, occurrence in evaluation.firing.items():
        alert = open_alerts.get(scope)
        if alert is None:
            writes.append(_new(rule, scope, occurrence, now))
        elif (write := _grown(rule, alert, occurrence, now)) is not None:
            writes.append(write)
    for scope, alert in open_alerts.items():
        if scope in evaluation.firing:
            continue
        if not rule.event_like or scope in evaluation.cleared:
            writes.append(_resolved(rule, alert, now))
        elif (write := _grown(rule, alert, None, now)) is not None:
            writes.append(write)
    return writes


def _notes(rule: AlertRule, what: str, title: str, body: str) -> list[Note]:
    return [Note(i, what, title, body) for i in range(len(rule.channels))]


def _new(rule: AlertRule, scope: str, occurrence: Occurrence, now: datetime) -> AlertWrite:
    values = {
        "summary": occurrence.summary,
        "count": occurrence.count,
        "notified_count": occurrence.count,
        "first_at": now,
        "last_at": occurrence.at,
        "notified_at": now,
        "job_ids": occurrence.job_ids[-RECENT_JOBS:],
    }
    title = f"[jobtrail] {rule.name} firing: {scope}"
    body = occurrence.summary
    if rule.event_like and occurrence.count > 1:
        body = f"{occurrence.count} at once; the latest: {occurrence.summary}"
    return AlertWrite(None, scope, values, _notes(rule, "firing", title, body))


def _grown(
    rule: AlertRule, alert: Alert, occurrence: Occurrence | None, now: datetime
) -> AlertWrite | None:
    """The alert with this evaluation's occurrences counted in, and an ``update`` message if
    its count changed since the last one and the group window has passed; None: no change."""
    values: dict[str, object] = {}
    count = alert.count
    if occurrence is not None:
        if rule.event_like:  # occurrences add up; a state is what it is now
            count = alert.count + occurrence.count
            job_ids = list(dict.fromkeys(alert.job_ids + occurrence.job_ids))[-RECENT_JOBS:]
        else:
            count, job_ids = occurrence.count, occurrence.job_ids[-RECENT_JOBS:]
        if count != alert.count or job_ids != alert.job_ids:
            values = {"count": count, "job_ids": job_ids, "summary": occurrence.summary}
            values["last_at"] = occurrence.at
    window_over = now - alert.notified_at >= timedelta(seconds=rule.group_window)
    notes: list[Note] = []
    if window_over and count != alert.notified_count:
        values |= {"notified_at": now, "notified_count": count}
        summary = occurrence.summary if occurrence else alert.summary
        title = f"[jobtrail] {rule.name} still firing: {alert.scope_key}"
        notes = _notes(rule, "update", title, _update_body(rule, alert, count, summary))
    if not values:
        return None
    return AlertWrite(alert.id, alert.scope_key, values, notes)


def _update_body(rule: AlertRule, alert: Alert, count: int, summary: str) -> str:
    if rule.event_like:
        return f"{count} in all since {alert.first_at:%Y-%m-%d %H:%M:%S} UTC; the latest: {summary}"
    return f"still firing since {alert.first_at:%Y-%m-%d %H:%M:%S} UTC: {summary}"


def _resolved(rule: AlertRule, alert: Alert, now: datetime) -> AlertWrite:
    values = {"status": "resolved", "open_key": None, "resolved_at": now}
    title = f"[jobtrail] {rule.name} resolved: {alert.scope_key}"
    seconds = (now - alert.first_at).total_seconds()
    counted = f"{alert.count} in all, " if rule.event_like else ""
    body = f"resolved: {counted}firing for {seconds:.0f} s; last: {alert.summary}"
    return AlertWrite(alert.id, alert.scope_key, values, _notes(rule, "resolved", title, body))
