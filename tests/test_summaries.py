"""Summaries: statistics read per-day and per-minute summaries rolled up from a watermark, plus
the jobs finished since, and give the same figures as counting the jobs themselves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from jobtrail import Context, Status, Tracker
from jobtrail.jobs import Stats
from jobtrail.store.database import create_engine
from jobtrail.store.migrate import upgrade
from jobtrail.store.summaries import read_mark
from jobtrail.store.tables import job_days, job_minutes, job_rollups, jobs
from tests.test_retention import finished
from tests.test_schema import empty_database_url  # noqa: F401 (a fixture)
from tests.waiting import until

MIX = [Status.SUCCEEDED] * 3 + [Status.PARTIAL, Status.FAILED, Status.CANCELLED, Status.QUEUED]


@pytest.fixture
def kinds(tracker: Tracker) -> Tracker:
    """The tracker with kinds ``report`` and ``sync``."""

    @tracker.job("report")
    def report(ctx: Context) -> None: ...

    @tracker.job("sync", queue="slow")
    def sync(ctx: Context) -> None: ...

    return tracker


def figures(stats: Stats) -> tuple[object, ...]:
    """What must not change whether jobs are counted from summaries or from rows."""
    return (
        stats.total_jobs,
        stats.jobs_by_status,
        stats.jobs_by_kind,
        stats.success_rate,
        stats.active_jobs,
        round(stats.total_processing_seconds, 6),
        stats.p50_duration_seconds,
        stats.p95_duration_seconds,
    )


def make_mix(tracker: Tracker) -> None:
    for kind in ("report", "sync"):
        for status in MIX:
            finished(tracker, kind, status)


def test_stats_are_the_same_before_and_after_a_roll_up(kinds: Tracker) -> None:
    make_mix(kinds)
    before = kinds.stats(days=7)
    rolled = kinds.store.summaries.roll_up(lag=timedelta(0))

    after = kinds.stats(days=7)

    assert rolled.jobs == 12  # every finished job; the two queued ones stay live
    assert figures(after) == figures(before)
    assert after.jobs_by_status == {
        "succeeded": 6,
        "partial": 2,
        "failed": 2,
        "cancelled": 2,
        "queued": 2,
    }


def test_jobs_finished_after_the_watermark_are_counted_live_once(kinds: Tracker) -> None:
    make_mix(kinds)
    kinds.store.summaries.roll_up(lag=timedelta(0))
    finished(kinds, "report", Status.SUCCEEDED)
    finished(kinds, "report", Status.FAILED)

    live_and_summed = kinds.stats(days=7)
    again = kinds.store.summaries.roll_up(lag=timedelta(0))
    summed = kinds.stats(days=7)

    assert again.jobs == 2
    assert live_and_summed.jobs_by_kind == {"report": 9, "sync": 7}
    assert figures(summed) == figures(live_and_summed)
    with kinds.store.database.read() as conn:
        counted = conn.execute(sa.select(sa.func.sum(job_days.c.job_count))).scalar_one()
    assert counted == 14


def test_grouped_stats_and_the_timeline_read_the_summaries(kinds: Tracker) -> None:
    make_mix(kinds)
    grouped = kinds.stats(days=7, group_by="kind")
    timeline = kinds.ops.timeline(7)
    kinds.store.summaries.roll_up(lag=timedelta(0))

    assert {k: figures(s) for k, s in kinds.stats(days=7, group_by="kind").groups.items()} == {
        k: figures(s) for k, s in grouped.groups.items()
    }
    assert kinds.ops.timeline(7) == timeline
    today = kinds.now().date().isoformat()
    assert timeline[today]["succeeded"] == 6


def test_concurrent_roll_ups_fold_each_job_once(kinds: Tracker) -> None:
    make_mix(kinds)
    start = threading.Barrier(4)

    def roll() -> None:
        start.wait(10)
        kinds.store.summaries.roll_up(lag=timedelta(0))

    threads = [threading.Thread(target=roll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    with kinds.store.database.read() as conn:
        counted = conn.execute(sa.select(sa.func.sum(job_days.c.job_count))).scalar_one()
        minutes = conn.execute(sa.select(sa.func.sum(job_minutes.c.job_count))).scalar_one()
    assert counted == 12
    assert minutes == 12


def test_a_first_roll_up_of_many_jobs_goes_in_chunks(
    kinds: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobtrail.store.summaries.CHUNK", 3)
    make_mix(kinds)
    rolled = kinds.store.summaries.roll_up(lag=timedelta(0))
    assert rolled.jobs == 12
    with kinds.store.database.read() as conn:
        assert read_mark(conn) == rolled.rolled_to


def test_percentiles_come_from_the_histograms_once_jobs_are_purged(kinds: Tracker) -> None:
    for seconds in (0.05, 0.3, 0.3, 7.0):
        job = finished(kinds, "report", Status.SUCCEEDED)
        with kinds.store.database.write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job).values(duration_seconds=seconds))
    exact = kinds.stats(days=7)
    kinds.store.summaries.roll_up(lag=timedelta(0))
    assert figures(kinds.stats(days=7)) == figures(exact)
    assert (exact.p50_duration_seconds, exact.p95_duration_seconds) == (0.3, 7.0)

    assert kinds.purge(succeeded_days=0) == 4

    estimated = kinds.stats(days=7)
    assert estimated.total_jobs == 4
    assert (estimated.p50_duration_seconds, estimated.p95_duration_seconds) == (0.5, 10.0)
    assert estimated.total_processing_seconds == pytest.approx(7.65)


def test_throughput_by_the_minute_and_hour_counts_live_and_summed_jobs(kinds: Tracker) -> None:
    make_mix(kinds)
    since = kinds.now() - timedelta(hours=1)
    live = kinds.ops.finished(since, timedelta(minutes=1))
    kinds.store.summaries.roll_up(lag=timedelta(0))
    finished(kinds, "report", Status.FAILED)

    by_minute = kinds.ops.finished(since, timedelta(minutes=1))
    by_hour = kinds.ops.finished(since, timedelta(hours=1))

    def total(counts: dict[datetime, dict[str, int]], status: str) -> int:
        return sum(c.get(status, 0) for c in counts.values())

    assert total(live, "succeeded") == 6
    assert total(by_minute, "failed") == 3
    assert total(by_hour, "failed") == 3
    assert total(by_hour, "succeeded") == 6
    assert all(start.second == 0 and start.tzinfo is UTC for start in by_minute)
    with pytest.raises(ValueError, match="whole number of minutes"):
        kinds.ops.finished(since, timedelta(seconds=90))


def test_queues_show_their_backlog_last_hour_and_missing_consumers(kinds: Tracker) -> None:
    make_mix(kinds)
    kinds.store.summaries.roll_up(lag=timedelta(0))
    finished(kinds, "sync", Status.FAILED)

    queues = {q.name: q for q in kinds.ops.queues()}

    assert set(queues) == {"default", "slow"}
    default, slow = queues["default"], queues["slow"]
    # Tracked jobs run in the default queue; submitted "sync" jobs go to "slow".
    assert (default.queued, default.finished_last_hour, default.failed_last_hour) == (1, 12, 5)
    assert (slow.queued, slow.running, slow.finished_last_hour, slow.failed_last_hour) == (
        1,
        0,
        1,
        0,
    )
    assert slow.oldest_queued_seconds is not None
    assert slow.workers == 0
    assert slow.unattended
    with kinds.worker(concurrency=1, queues=["slow"]):
        consumed = {q.name: q for q in kinds.ops.queues()}
        assert consumed["slow"].workers == 1
        assert consumed["default"].workers == 0
    assert [q.name for q in kinds.ops.queues(owner="nobody")] == []


def test_the_migration_turns_the_rollups_of_purged_jobs_into_summaries(
    empty_database_url: str,  # noqa: F811 (the fixture)
) -> None:
    engine = create_engine(empty_database_url)
    try:
        upgrade(engine, "0005")
        histogram = [0, 0, 0, 5] + [0] * 12
        row = {"kind": "report", "owner": "", "status": "succeeded", "job_count": 5}
        row |= {"duration_count": 5, "duration_sum": 10.0, "histogram": histogram}
        with engine.begin() as conn:
            conn.execute(job_rollups.insert().values(day=datetime.now(UTC).date(), **row))
        upgrade(engine)
    finally:
        engine.dispose()
    with Tracker(empty_database_url) as tracker:
        stats = tracker.stats(days=2)
        assert stats.jobs_by_status == {"succeeded": 5}
        assert stats.average_duration_seconds == 2.0
        assert stats.p50_duration_seconds == 2.0


def test_the_maintenance_keeps_the_summaries_rolled(kinds: Tracker) -> None:
    make_mix(kinds)
    with kinds.store.database.read() as conn:
        assert read_mark(conn).year == 1970

    def mark() -> datetime | None:
        with kinds.store.database.read() as conn:
            found = read_mark(conn)
        return None if found.year == 1970 else found

    # What every worker (and serve, through its maintenance worker) runs each heartbeat.
    with kinds.worker(consume=False, heartbeat_interval=0.1):
        rolled = until(mark, 10, what="the maintenance to roll the summaries up")
    assert rolled is not None
    assert timedelta(0) < kinds.now() - rolled < timedelta(seconds=30)
