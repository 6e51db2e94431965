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
from jobtrail.store.tables import job_events, job_items, jobs
from tests.waiting import until

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
    with tracker.store.database.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))


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
        with tracker.store.database.engine.begin() as conn:
            for job_id, created in [
                (inside, window_start + timedelta(hours=1)),
                (outside, window_start - timedelta(hours=1)),  # the same day, before the window
            ]:
                values = {"created_at": created, "started_at": created, "completed_at": created}
                conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
        before = tracker.stats(days=90)

        assert tracker.purge() == 2
        after = tracker.stats(days=90)

        assert after.total_jobs == before.total_jobs
        assert after.jobs_by_status == before.jobs_by_status
