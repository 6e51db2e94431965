"""The alert conditions: each reads the store for one rule and says which scopes fire now
(with their occurrences), which cleared, and how far it has read."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from jobtrail.alerts import RECENT_JOBS, Alert, AlertRule
from jobtrail.jobs import ScheduleInfo
from jobtrail.states import Status
from jobtrail.store.alert_reads import AlertReads
from jobtrail.store.alerts import StoredRule
from jobtrail.webhooks import Subscription

OVERLAP = timedelta(seconds=10)
"""How far back each reading of failures and rescues starts again: a row written before the
last reading may commit after it (PostgreSQL commits out of order); ids seen are skipped."""


@dataclass
class Occurrence:
    """What fires in one scope: new occurrences (or, for a state, how many now), the jobs
    concerned (newest last), a one-line summary and when it last happened."""

    count: int
    job_ids: list[str]
    summary: str
    at: datetime


@dataclass
class Evaluation:
    """One evaluation of a rule: the scopes firing, the event-like scopes that cleared, and
    the rule's cursor after it (None: unchanged)."""

    firing: dict[str, Occurrence] = field(default_factory=dict)
    cleared: set[str] = field(default_factory=set)
    cursor: dict[str, Any] | None = None


@dataclass(frozen=True)
class Look:
    """What a condition reads with: the store's reads, the stored schedules, now, and how a
    job is linked to (``public_url``)."""

    reads: AlertReads
    schedules: Callable[[], list[ScheduleInfo]]
    webhooks: Callable[[datetime], list[Subscription]]
    """Subscriptions disabled at or after a time and still disabled."""
    now: datetime
    public_url: str

    def link(self, job_id: str) -> str:
        """The job's page in the dashboard (or its id, without a public URL)."""
        if not self.public_url:
            return f"job {job_id}"
        return f"{self.public_url.rstrip('/')}/jobs/{job_id}"


Condition = Callable[[Look, StoredRule, dict[str, Alert]], Evaluation]


def _iso(at: datetime) -> str:
    return at.isoformat()


def _parse(text: Any, default: datetime) -> datetime:
    return datetime.fromisoformat(text) if isinstance(text, str) else default


def failed(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Jobs that ended ``failed`` (and ``partial`` with ``include_partial``) since the last
    reading, per kind; a kind's alert clears at its next success."""
    rule, cursor = stored.rule, stored.cursor or {}
    read_to = _parse(cursor.get("at"), stored.updated_at)
    statuses = (
        {Status.FAILED, Status.PARTIAL} if rule.params.get("include_partial") else {Status.FAILED}
    )
    seen = _seen(cursor)
    rows = look.reads.finished(rule, read_to - OVERLAP, statuses, skip=seen)
    evaluation = Evaluation()
    for row in rows:
        _add(evaluation, f"kind={row.kind}", row.id, _failure(look, row), row.completed_at)
    evaluation.cleared = {
        scope
        for scope, alert in open_alerts.items()
        if scope not in evaluation.firing
        and look.reads.succeeded_after(rule, scope.removeprefix("kind="), alert.last_at)
    }
    if rows:
        new_to = max(read_to, max(row.completed_at for row in rows))
        seen |= {row.id: _iso(row.completed_at) for row in rows}
        evaluation.cursor = {"at": _iso(new_to), "seen": _recent(seen, new_to - OVERLAP)}
    return evaluation


def _seen(cursor: dict[str, Any]) -> dict[str, str]:
    """The ids a cursor saw in its overlap, with when each happened."""
    seen = cursor.get("seen")
    return {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}


def _recent(seen: dict[str, str], horizon: datetime) -> dict[str, str]:
    """Those of ``seen`` at or after ``horizon`` (older ones are never read again)."""
    return {key: at for key, at in seen.items() if datetime.fromisoformat(at) >= horizon}


def _failure(look: Look, row: Any) -> str:
    owner = f" (owner {row.owner})" if row.owner else ""
    error = (row.error_message or "no error message").strip().splitlines()
    items = f"; {row.items_failed} items failed" if row.items_failed else ""
    message = error[-1][:300] if error else ""
    return f"{row.kind} job {row.status}{owner}: {message}{items} — {look.link(row.id)}"


def _add(evaluation: Evaluation, scope: str, job_id: str, summary: str, at: datetime) -> None:
    found = evaluation.firing.get(scope)
    if found is None:
        evaluation.firing[scope] = Occurrence(1, [job_id], summary, at)
        return
    found.count += 1
    found.job_ids.append(job_id)
    found.summary, found.at = summary, max(found.at, at)


def worker_lost(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Jobs rescued from a lost worker since the last reading, per worker (``host:pid``); an
    alert clears after a group window without another rescue."""
    cursor = stored.cursor or {}
    if "after" not in cursor:  # a new rule watches rescues from now on
        return Evaluation(cursor={"after": look.reads.last_event_id(), "seen": {}})
    seen = _seen(cursor)
    rows = look.reads.rescued(stored.rule, int(cursor["after"]), skip=[int(k) for k in seen])
    evaluation = Evaluation()
    for row in rows:
        worker = _process(row.message or "")
        summary = f"worker {worker} was lost; {row.kind} job rescued — {look.link(row.id)}"
        _add(evaluation, f"worker={worker}", row.id, summary, row.at)
    window = timedelta(seconds=stored.rule.group_window)
    evaluation.cleared = {
        scope
        for scope, alert in open_alerts.items()
        if scope not in evaluation.firing and alert.last_at + window <= look.now
    }
    if rows:
        seen |= {str(row.event_id): _iso(row.at) for row in rows}
        horizon = max(datetime.fromisoformat(at) for at in seen.values()) - OVERLAP
        recent = _recent(seen, horizon)
        # Events older than the overlap are settled: the next reading starts past them.
        after = max((int(k) for k in seen if k not in recent), default=int(cursor["after"]))
        evaluation.cursor = {"after": max(after, int(cursor["after"])), "seen": recent}
    return evaluation


def _process(message: str) -> str:
    """``host:pid`` of the lost worker, from the rescue's message ("heartbeat lost from
    host:pid:thread")."""
    worker = message.rsplit(" ", 1)[-1]
    return worker.rsplit(":", 1)[0] if worker.count(":") >= 2 else worker


def failure_rate(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Kinds whose share of failed jobs over the window exceeds the threshold, with at least
    ``min_count`` finished."""
    rule = stored.rule
    window, threshold = rule.number("window"), rule.number("threshold")
    since = look.now - timedelta(seconds=window)
    evaluation = Evaluation()
    for kind, by_status in look.reads.outcomes(rule, since).items():
        total, failures = sum(by_status.values()), by_status.get(Status.FAILED.value, 0)
        if total >= rule.number("min_count") and failures / total > threshold:
            summary = (
                f"more than {threshold:.0%} of {kind} failed in the last {_span(window)}: "
                f"{failures} of {total}"
            )
            latest = look.reads.latest_failed(rule, kind, since, RECENT_JOBS)
            evaluation.firing[f"kind={kind}"] = Occurrence(failures, latest, summary, look.now)
    return evaluation


def _span(seconds: float) -> str:
    if seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def stalled(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Running jobs that stalled (no progress for the kind's ``stall_after``) or run longer
    than the kind's ``timeout``, per kind."""
    evaluation = Evaluation()
    for row in look.reads.stuck(stored.rule, look.now):
        why = "stalled" if row.stalled else f"runs past its {row.timeout:g} s limit"
        summary = f"{row.kind} job {why} — {look.link(row.id)}"
        _add(evaluation, f"kind={row.kind}", row.id, summary, look.now)
    return evaluation


def queue_unconsumed(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Queues whose jobs wait, no live worker consuming them, for longer than ``older_than``."""
    older = stored.rule.number("older_than")
    rows = look.reads.unconsumed(stored.rule, look.now - timedelta(seconds=older))
    return _queues(
        look, rows, lambda q, n: f"{n} jobs wait on queue '{q}', which no live worker consumes"
    )


def queue_age(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Queues whose oldest queued job has been due for longer than ``older_than``."""
    older = stored.rule.number("older_than")
    rows = look.reads.queued_before(stored.rule, look.now - timedelta(seconds=older))
    return _queues(look, rows, lambda q, n: f"{n} jobs queued on '{q}' for too long")


def _queues(look: Look, rows: Iterable[Any], say: Callable[[str, int], str]) -> Evaluation:
    evaluation = Evaluation()
    for queue, count, oldest, some_job in rows:
        age = (look.now - oldest).total_seconds()
        summary = f"{say(queue, count)}; the oldest for {_duration(age)}"
        evaluation.firing[f"queue={queue}"] = Occurrence(count, [some_job], summary, look.now)
    return evaluation


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def schedule_missed(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Schedules whose latest slot (``grace`` seconds ago or more) has no started job: no
    worker ticked it, it was recorded missed, or its job never started."""
    from jobtrail.scheduler import Schedule  # croniter loads only with schedules

    rule, grace = stored.rule, stored.rule.number("grace")
    evaluation = Evaluation()
    for info in look.schedules():
        if not _watched(rule, info):
            continue
        try:
            schedule = Schedule(info.name, info.kind, info.cron, info.every_seconds)
        except ValueError:
            continue
        slot = schedule.latest_slot(look.now - timedelta(seconds=grace))
        why = _missed(look, info, schedule.key(slot), slot)
        if why is not None:
            summary = f"schedule {info.name} ({info.kind}): the slot of {_iso(slot)} {why}"
            job_ids = [] if why.startswith("was") else [why.rsplit(" ", 1)[-1]]
            evaluation.firing[f"schedule={info.name}"] = Occurrence(1, job_ids, summary, slot)
    return evaluation


def _watched(rule: AlertRule, info: ScheduleInfo) -> bool:
    name = rule.params.get("schedule")
    return (
        (name is None or name == info.name)
        and rule.kind in (None, info.kind)
        and rule.owner in (None, info.owner)
    )


def _missed(look: Look, info: ScheduleInfo, key: str, slot: datetime) -> str | None:
    """Why the slot was missed (None: its job started)."""
    if info.last_slot_at is None or info.last_slot_at < slot:
        return "was never ticked (no worker ran the schedule)"
    job = look.reads.slot_job(info.owner, key)
    if job is None:
        recorded: Sequence[Any] = info.recent_runs
        missed = any(run.slot_at == slot and run.outcome == "missed" for run in recorded)
        return "was recorded missed (no worker was running)" if missed else None
    if job.started_at is None:
        return f"has a job that did not start: {job.id}"
    return None


def webhook_disabled(look: Look, stored: StoredRule, open_alerts: dict[str, Alert]) -> Evaluation:
    """Webhook subscriptions disabled (after failing) since the rule was made and not
    enabled again, each its own scope (``owner`` in the rule's scope: only that owner's)."""
    evaluation = Evaluation()
    for sub in look.webhooks(stored.created_at):
        if stored.rule.owner not in (None, sub.owner):
            continue
        host = urlsplit(sub.url).hostname or "?"
        why = sub.disabled_reason or "it kept failing"
        summary = f"webhook {sub.id} to {host} was disabled: {why}"
        at = sub.disabled_at or look.now
        evaluation.firing[f"webhook={sub.id}"] = Occurrence(1, [], summary, at)
    return evaluation


CONDITIONS: dict[str, Condition] = {
    "failed": failed,
    "worker_lost": worker_lost,
    "failure_rate": failure_rate,
    "stalled": stalled,
    "queue_unconsumed": queue_unconsumed,
    "queue_age": queue_age,
    "schedule_missed": schedule_missed,
    "webhook_disabled": webhook_disabled,
}
"""Each condition a rule may watch."""
