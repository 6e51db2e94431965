"""Retention: purge deletes exactly the jobs past their age, in batches, and stats stay right."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jobtrail import Context, JobNotFound, Status, Tracker
from jobtrail.jobs import NewJob, Progress
from jobtrail.store.tables import job_events, job_items
from tests.clock import T0, FakeClock
from tests.rows import force
from tests.waiting import until
from tests.web.client import TESTCLIENT_WARNING, bearer, open_client

JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")


@pytest.fixture
def kinds(tracker: Tracker) -> Tracker:
    """The tracker with kinds ``report`` and ``sync``."""

    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    @tracker.job("sync")
    def sync(ctx: Context) -> None: ...

    return tracker


def finished(tracker: Tracker, kind: str, status: Status) -> str:
    """A job of ``kind`` that really ran to ``status`` (partial and failed ones with items)."""
    if status is Status.CANCELLED:
        job = tracker.submit(kind)
        tracker.cancel(job.id)
        return job.id
    if status is Status.QUEUED:
        return tracker.submit(kind).id
    bad = {Status.SUCCEEDED: set(), Status.PARTIAL: {"b"}, Status.FAILED: {"a", "b"}}[status]
    with tracker.track(kind) as ctx:
        for item in ctx.items(["a", "b"]):
            with ctx.item(item):
                if item in bad:
                    raise ValueError(f"{item} failed")
    assert tracker.get(ctx.job_id).status is status
    return ctx.job_id


def age(
    tracker: Tracker, job_id: str, *, created: float, completed: float | None, duration: float
) -> None:
    """Move a job into the past: created ``created`` days ago, completed ``completed`` days ago
    (None: not completed), having run for ``duration`` seconds."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"created_at": now - timedelta(days=created)}
    if completed is not None:
        ended = now - timedelta(days=completed)
        values |= {
            "completed_at": ended,
            "started_at": ended - timedelta(seconds=duration),
            "duration_seconds": duration,
        }
    force(tracker, job_id, **values)


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    status: Status
    created: float
    completed: float | None
    purged: bool


CASES = [
    Case("old success", "report", Status.SUCCEEDED, 4.5, 4, purged=True),
    Case("young success", "report", Status.SUCCEEDED, 2.5, 2, purged=False),
    Case("old failure", "sync", Status.FAILED, 8.5, 8, purged=True),
    Case("young failure", "sync", Status.FAILED, 6.5, 6, purged=False),
    Case("old partial", "sync", Status.PARTIAL, 8.5, 8, purged=True),
    Case("young partial", "report", Status.PARTIAL, 6.5, 6, purged=False),
    Case("old cancel", "report", Status.CANCELLED, 8, 8, purged=True),
    Case("young cancel", "sync", Status.CANCELLED, 5, 5, purged=False),
    Case("ancient long run", "sync", Status.SUCCEEDED, 31, 1.5, purged=True),
    Case("ancient queued", "report", Status.QUEUED, 40, None, purged=False),
    Case("fresh success", "report", Status.SUCCEEDED, 0, 0, purged=False),
]


@pytest.fixture
def history(kinds: Tracker) -> dict[str, str]:
    """One job per case, aged as the case says; returns job ids by case name."""
    ids = {}
    for n, case in enumerate(CASES):
        job_id = finished(kinds, case.kind, case.status)
        age(kinds, job_id, created=case.created, completed=case.completed, duration=1.5 * (n + 1))
        ids[case.name] = job_id
    return ids


@contextmanager
def counting_job_deletes(tracker: Tracker) -> Iterator[list[str]]:
    """Collect every ``DELETE FROM jobs`` statement the store runs inside the block."""
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM JOBS"):
            statements.append(statement)

    sa.event.listen(tracker.store.database.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        sa.event.remove(tracker.store.database.engine, "before_cursor_execute", seen)


def rows_of(tracker: Tracker, table: sa.Table, job_ids: set[str]) -> int:
    with tracker.store.database.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.job_id.in_(job_ids))
        return int(conn.execute(query).scalar_one())


def test_purge_deletes_exactly_the_jobs_past_their_age_with_their_events_and_items(
    kinds: Tracker, history: dict[str, str]
) -> None:
    doomed = {history[c.name] for c in CASES if c.purged}
    kept = {history[c.name] for c in CASES if not c.purged}
    assert rows_of(kinds, job_items, {history["old partial"]}) == 1
    assert rows_of(kinds, job_events, doomed) > 0

    with counting_job_deletes(kinds) as deletes:
        purged = kinds.purge(batch_size=2)

    assert purged == len(doomed) == 5
    assert len(deletes) == 3, "five jobs in batches of two"
    for job_id in doomed:
        with pytest.raises(JobNotFound):
            kinds.get(job_id)
    assert {kinds.get(job_id).id for job_id in kept} == kept
    assert rows_of(kinds, job_events, doomed) == 0
    assert rows_of(kinds, job_items, doomed) == 0
    assert rows_of(kinds, job_events, kept) >= len(kept)
    assert [i.item_id for i in kinds.failed_items(history["young partial"])] == ["b"]
    assert kinds.purge() == 0


def test_stats_report_the_same_figures_before_and_after_a_purge(
    kinds: Tracker, history: dict[str, str]
) -> None:
    before = kinds.stats(days=90)

    assert kinds.purge(batch_size=2) == 5
    after = kinds.stats(days=90)

    assert after.total_jobs == before.total_jobs == len(CASES)
    assert after.jobs_by_status == before.jobs_by_status
    assert after.jobs_by_kind == before.jobs_by_kind
    assert after.total_processing_seconds == pytest.approx(before.total_processing_seconds)
    assert before.total_processing_seconds == pytest.approx(
        sum(1.5 * (n + 1) for n, c in enumerate(CASES) if c.completed is not None)
    )
    assert after.success_rate == pytest.approx(before.success_rate)
    assert after.average_duration_seconds == pytest.approx(before.average_duration_seconds)
    assert after.active_jobs == before.active_jobs == 1


def test_purge_ages_can_be_chosen_per_call(kinds: Tracker, history: dict[str, str]) -> None:
    assert kinds.purge(succeeded_days=1, other_days=30, max_days=60) == 3

    gone = {"old success", "young success", "ancient long run"}
    for case in CASES:
        if case.name in gone:
            with pytest.raises(JobNotFound):
                kinds.get(history[case.name])
        else:
            assert kinds.get(history[case.name]).id == history[case.name]


def test_a_running_worker_purges_old_jobs_periodically(database_url: str) -> None:
    with Tracker(database_url, purge_interval=0.2, flush_interval=0.05) as tracker:

        @tracker.job("report")
        def report(ctx: Context) -> None: ...

        old = finished(tracker, "report", Status.SUCCEEDED)
        young = finished(tracker, "report", Status.SUCCEEDED)
        age(tracker, old, created=4, completed=4, duration=1.0)

        def purged() -> bool:
            try:
                tracker.get(old)
            except JobNotFound:
                return True
            return False

        with tracker.worker(1, poll_interval=0.01, heartbeat_interval=0.1):
            until(purged, timeout=10, what="the worker's purge")

        assert tracker.get(young).status is Status.SUCCEEDED
        assert tracker.stats(days=90).total_jobs == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBTRAIL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_purge_command_deletes_old_jobs_with_the_default_or_given_ages(
    kinds: Tracker, database_url: str
) -> None:
    two_days = finished(kinds, "report", Status.SUCCEEDED)
    age(kinds, two_days, created=2, completed=2, duration=1.0)

    by_default = run_cli("purge", "--database-url", database_url)
    assert by_default.returncode == 0, by_default.stderr
    assert by_default.stdout.strip() == "purged 0 jobs"
    assert kinds.get(two_days).status is Status.SUCCEEDED

    shorter = run_cli("purge", "--database-url", database_url, "--succeeded-days", "1")
    assert shorter.returncode == 0, shorter.stderr
    assert shorter.stdout.strip() == "purged 1 jobs"
    with pytest.raises(JobNotFound):
        kinds.get(two_days)
    assert kinds.stats(days=90).total_jobs == 1


def test_a_job_created_just_before_the_stats_window_stays_out_of_it_after_a_purge(
    database_url: str,
) -> None:
    now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    with Tracker(database_url, clock=lambda: now) as tracker:

        @tracker.job("report")
        def report(ctx: Context) -> None: ...

        inside = finished(tracker, "report", Status.SUCCEEDED)
        outside = finished(tracker, "report", Status.SUCCEEDED)
        window_start = now - timedelta(days=90)
        for job_id, created in [
            (inside, window_start + timedelta(hours=1)),
            (outside, window_start - timedelta(hours=1)),  # the same day, before the window
        ]:
            force(tracker, job_id, created_at=created, started_at=created, completed_at=created)
        before = tracker.stats(days=90)

        assert tracker.purge() == 2
        after = tracker.stats(days=90)

        assert after.total_jobs == before.total_jobs
        assert after.jobs_by_status == before.jobs_by_status


# -- per-kind ages and the cap ---------------------------------------------------------------


def test_each_registered_kind_keeps_its_jobs_as_long_as_it_promises(tracker: Tracker) -> None:
    @tracker.job("trace", retain_succeeded=10, retain_failed=1)
    def trace(ctx: Context) -> None: ...

    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    kept_success = finished(tracker, "trace", Status.SUCCEEDED)
    purged_failure = finished(tracker, "trace", Status.FAILED)
    purged_report = finished(tracker, "report", Status.SUCCEEDED)
    for job_id in (kept_success, purged_failure, purged_report):
        age(tracker, job_id, created=4, completed=4, duration=1.0)

    assert tracker.purge() == 2

    assert tracker.get(kept_success).status is Status.SUCCEEDED
    for job_id in (purged_failure, purged_report):
        with pytest.raises(JobNotFound):
            tracker.get(job_id)


def test_a_kinds_longer_promise_is_not_cut_short_by_the_30_day_cap(tracker: Tracker) -> None:
    @tracker.job("audit", retain_succeeded=90)
    def audit(ctx: Context) -> None: ...

    job_id = finished(tracker, "audit", Status.SUCCEEDED)
    age(tracker, job_id, created=45, completed=45, duration=1.0)

    assert tracker.purge() == 0
    assert tracker.purge(max_days=40) == 1  # a cap given to the purge applies as given


def test_explicit_ages_are_not_overridden_by_the_default_cap(kinds: Tracker) -> None:
    month_old = finished(kinds, "report", Status.SUCCEEDED)
    age(kinds, month_old, created=31, completed=31, duration=1.0)

    assert kinds.purge(succeeded_days=90, other_days=90) == 0
    assert kinds.get(month_old).status is Status.SUCCEEDED
    assert kinds.purge(succeeded_days=90, other_days=90, max_days=30) == 1


def test_a_kind_refuses_a_negative_retention() -> None:
    from jobtrail.kinds import JobKind

    with pytest.raises(ValueError, match="retain_failed"):
        JobKind.of("k", lambda ctx: None, retain_failed=-1)


# -- expiry of unfinished work ---------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(database_url: str, clock: FakeClock) -> Iterator[Tracker]:
    """A tracker on ``clock`` with a kind whose queued jobs expire after a minute."""
    with Tracker(database_url, clock=clock) as tracker:

        @tracker.job("trace", expire_after=60)
        def trace(ctx: Context) -> None: ...

        yield tracker


def test_a_queued_job_not_started_within_expire_after_ends_cancelled_as_expired(
    timed: Tracker, clock: FakeClock
) -> None:
    job = timed.submit("trace")
    assert job.expires_at == T0 + timedelta(seconds=60)
    clock.advance(59)
    assert timed.ops.expire() == []

    clock.advance(2)
    [expired] = timed.ops.expire()

    assert expired.id == job.id
    assert (expired.status, expired.error_message) == (Status.CANCELLED, "expired")
    last = timed.events(job.id)[-1]
    assert (last.type, last.data) == ("cancelled", {"reason": "expired"})
    assert last.message == "expired: not started by 2024-06-01T12:01:00+00:00"
    assert timed.ops.expire() == []


def test_a_job_due_later_expires_counting_from_when_it_is_due(
    timed: Tracker, clock: FakeClock
) -> None:
    job = timed.submit("trace", run_after=T0 + timedelta(hours=1))
    clock.advance(3600 + 59)
    assert timed.ops.expire() == []
    clock.advance(2)
    assert [j.id for j in timed.ops.expire()] == [job.id]


def test_a_job_that_started_or_retries_never_expires(timed: Tracker, clock: FakeClock) -> None:
    started = timed.submit("trace")
    timed.store.runs.claim("w", "lease", 1, kinds=["trace"])
    timed.store.runs.requeue(started.id, "lease", Progress(0, None, None, None, None), [])
    clock.advance(3600)

    assert timed.ops.expire() == []
    assert timed.get(started.id).status is Status.QUEUED


def test_an_external_job_silent_past_its_report_timeout_ends_failed(
    timed: Tracker, clock: FakeClock
) -> None:
    job, _ = timed.add(NewJob("remote", status=Status.RUNNING, report_timeout=30))
    clock.advance(20)
    timed.report(job.id, {"progress": 10.0})
    clock.advance(29)
    assert timed.ops.expire() == []

    clock.advance(2)
    [failed] = timed.ops.expire()

    assert failed.status is Status.FAILED
    assert failed.error_message == "no report since 2024-06-01T12:00:20+00:00"
    assert failed.duration_seconds == 51
    assert timed.events(job.id)[-1].type == "failed"


def test_the_rescue_leaves_an_external_job_with_a_report_timeout_to_it(
    timed: Tracker, clock: FakeClock
) -> None:
    patient, _ = timed.add(NewJob("remote", status=Status.RUNNING, report_timeout=3600))
    plain, _ = timed.add(NewJob("remote", status=Status.RUNNING))
    clock.advance(120)

    rescued = timed.store.expiry.rescue(heartbeat_timeout=60)

    assert [job.id for job in rescued] == [plain.id]
    assert timed.get(patient.id).status is Status.RUNNING


def test_a_running_worker_expires_jobs_no_worker_started(database_url: str) -> None:
    with Tracker(database_url, flush_interval=0.05) as tracker:

        @tracker.job("gpu_job", queue="gpu", expire_after=0.2)
        def gpu_job(ctx: Context) -> None: ...

        job = tracker.submit("gpu_job")
        with tracker.worker(1, queues=["default"], poll_interval=0.01, heartbeat_interval=0.1):
            expired = until(lambda: tracker.get(job.id).terminal, timeout=10, what="expiry")

        assert expired
        assert tracker.get(job.id).error_message == "expired"


@TESTCLIENT_WARNING
def test_serve_without_registered_kinds_still_times_out_silent_external_jobs(
    database_url: str,
) -> None:
    from jobtrail.web import create_app

    with Tracker(database_url, heartbeat_interval=0.1) as tracker:
        admin = bearer(tracker.ops.create_token("admin", None))
        with open_client(create_app(tracker)) as client:
            body = {"kind": "remote", "report_timeout": 0.3}
            created = client.post("/api/v1/jobs/external", json=body, headers=admin)
            assert created.status_code == 201, created.text
            assert created.json()["report_timeout"] == 0.3
            job_id = created.json()["id"]
            until(lambda: tracker.get(job_id).terminal, timeout=10, what="the report timeout")
            refused = client.post(
                "/api/v1/jobs/external", json=body | {"report_timeout": -1}, headers=admin
            )

        assert (tracker.get(job_id).error_message or "").startswith("no report since")
        assert refused.status_code == 422
