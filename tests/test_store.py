"""The store: compare-and-set transitions, leases, listings, statistics and the indexes they use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from jobtrail import (
    Context,
    IllegalTransition,
    Job,
    JobNotFound,
    Priority,
    Status,
    Tracker,
)
from jobtrail.filters import Filters
from jobtrail.jobs import NewEvent, NewJob, Progress
from jobtrail.states import TERMINAL, TRANSITIONS
from jobtrail.store import Store
from jobtrail.store.filters import listing_conditions
from jobtrail.store.rows import JOB_COLUMNS
from jobtrail.store.stats import StatsQuery
from jobtrail.store.tables import jobs
from tests.clock import T0, FakeClock
from tests.rows import force


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked(database_url: str, clock: FakeClock) -> Iterator[Tracker]:
    """A tracker whose store reads the time from ``clock``, with kinds ``a`` and ``b``."""
    with Tracker(database_url, clock=clock, flush_interval=0.05) as t:

        @t.job("a")
        def a(ctx: Context) -> None: ...

        @t.job("b")
        def b(ctx: Context) -> None: ...

        yield t


def add(store: Store, **fields: Any) -> Job:
    """Insert one queued job straight through the store."""
    return store.jobs.add([NewJob(kind=fields.pop("kind", "k"), **fields)])[0]


def event_types(store: Store, job_id: str) -> list[str]:
    return [e.type for e in store.jobs.events(job_id)]


def progress(percent: float = 50.0, message: str | None = "halfway") -> Progress:
    return Progress(percent, message, 10, 5, 0)


# -- transitions -------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(Status))
def test_transition_applies_exactly_the_legal_status_changes(
    tracker: Tracker, source: Status
) -> None:
    store = tracker.store
    for target in Status:
        job = add(store)
        force(store, job.id, status=source.value)
        before = store.jobs.get(job.id)
        assert before.status is source

        if target in TRANSITIONS[source]:
            changed = store.jobs.transition(job.id, target)
            after = store.jobs.get(job.id)
            assert changed.status is after.status is target, f"{source} -> {target}"
            assert (after.completed_at is not None) is target.terminal, f"{source} -> {target}"
        else:
            with pytest.raises(IllegalTransition) as raised:
                store.jobs.transition(job.id, target)
            assert raised.value.current is source, f"{source} -> {target}"
            assert raised.value.targets == [target], f"{source} -> {target}"
            assert store.jobs.get(job.id) == before, f"{source} -> {target} changed the row"


def test_a_job_walks_the_legal_path_from_queued_to_an_outcome(tracker: Tracker) -> None:
    store = tracker.store
    job = add(store)
    path = [Status.WAITING, Status.RUNNING, Status.QUEUED, Status.RUNNING, Status.PARTIAL]
    for target in path:
        job = store.jobs.transition(job.id, target, events=[NewEvent(str(target))])
        assert job.status is target
    assert event_types(store, job.id) == ["created", *[str(s) for s in path]]


def test_a_terminal_job_never_changes_status(tracker: Tracker) -> None:
    store = tracker.store
    for terminal in sorted(TERMINAL):
        job = add(store)
        force(store, job.id, status=terminal.value, lease="L")
        before = store.jobs.get(job.id)

        for target in Status:
            with pytest.raises(IllegalTransition):
                store.jobs.transition(job.id, target)
        with pytest.raises(IllegalTransition):
            store.jobs.cancel(job.id)
        assert not store.runs.flush(job.id, "L", progress()).applied
        assert not store.runs.finish(job.id, "L", Status.FAILED, progress(), started_at=None)

        assert store.jobs.get(job.id) == before, terminal
        assert event_types(store, job.id) == ["created"], terminal


def test_transition_narrowed_by_from_refuses_other_legal_sources(tracker: Tracker) -> None:
    store = tracker.store
    job = add(store)
    store.jobs.transition(job.id, Status.RUNNING)
    with pytest.raises(IllegalTransition):
        store.jobs.transition(job.id, Status.CANCELLED, from_=[Status.QUEUED])
    assert store.jobs.get(job.id).status is Status.RUNNING


def test_transition_of_a_missing_job_raises_job_not_found(tracker: Tracker) -> None:
    with pytest.raises(JobNotFound):
        tracker.store.jobs.transition("no-such-job", Status.RUNNING)


# -- leases ------------------------------------------------------------------------------


def start(store: Store, lease: str = "L1") -> Job:
    return store.runs.start(NewJob(kind="k"), worker="here", lease=lease)


def test_finish_with_the_wrong_lease_writes_nothing(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    before = store.jobs.get(job.id)

    done = store.runs.finish(
        job.id,
        "someone-else",
        Status.SUCCEEDED,
        progress(100.0, "done"),
        started_at=job.started_at,
        result={"n": 1},
        events=[NewEvent("succeeded")],
    )

    assert done is False
    assert store.jobs.get(job.id) == before
    assert event_types(store, job.id) == ["created", "started"]


def test_finish_with_the_lease_ends_the_job_once(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    assert store.runs.finish(
        job.id, "L1", Status.SUCCEEDED, progress(100.0, "done"), started_at=None
    )
    assert not store.runs.finish(job.id, "L1", Status.FAILED, progress(), started_at=None)
    ended = store.jobs.get(job.id)
    assert ended.status is Status.SUCCEEDED
    assert ended.message == "done"


REFUSED_TOTAL = 2**70
"""An item count no database column holds (PostgreSQL: out of range; SQLite: past 64 bits)."""


def test_an_outcome_the_database_refuses_fails_its_job_with_the_reason(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)

    refused = Progress(100.0, "done", REFUSED_TOTAL, 1, 0)
    done = store.runs.finish(
        job.id, "L1", Status.SUCCEEDED, refused, started_at=job.started_at, result="lost"
    )

    assert done is True
    ended = store.jobs.get(job.id)
    assert ended.status is Status.FAILED
    assert ended.error_message is not None
    assert ended.error_message.startswith("the job's outcome could not be stored: ")
    assert ended.result is None
    assert event_types(store, job.id) == ["created", "started", "failed"]


def test_a_queued_outcome_the_database_refuses_fails_that_job_alone_in_its_group(
    tracker: Tracker,
) -> None:
    store = tracker.store
    first, bad, last = start(store, "A"), start(store, "B"), start(store, "C")
    busy, release = threading.Event(), threading.Event()

    def occupy(_: Any) -> bool:  # holds the commit thread, so the three share the next group
        busy.set()
        return release.wait(10)

    store.database.commits.start_grouping()
    try:
        store.database.commits.run_write_soon(occupy, "occupy the commit thread")
        assert busy.wait(10)
        for job, lease, total in ((first, "A", 10), (bad, "B", REFUSED_TOTAL), (last, "C", 10)):
            store.runs.finish(
                job.id,
                lease,
                Status.SUCCEEDED,
                Progress(100.0, None, total, 1, 0),
                started_at=job.started_at,
                result=lease,
                wait=False,
            )
        release.set()
    finally:
        store.database.commits.stop_grouping()  # commits what is queued

    assert [store.jobs.get(j.id).result for j in (first, last)] == ["A", "C"]
    assert {store.jobs.get(j.id).status for j in (first, last)} == {Status.SUCCEEDED}
    failed = store.jobs.get(bad.id)
    assert failed.status is Status.FAILED
    assert failed.error_message is not None
    assert failed.error_message.startswith("the job's outcome could not be stored: ")
    assert failed.items_total is None


def test_finish_records_the_duration_from_the_start(clocked: Tracker, clock: FakeClock) -> None:
    store = clocked.store
    job = start(store)
    clock.advance(2.5)
    assert store.runs.finish(job.id, "L1", Status.FAILED, progress(), started_at=job.started_at)
    ended = store.jobs.get(job.id)
    assert ended.duration_seconds == 2.5
    assert ended.completed_at == T0 + timedelta(seconds=2.5)


def test_a_progress_write_with_the_wrong_lease_is_ignored(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    result = store.runs.flush(job.id, "other", progress(70.0, "mine"))
    assert not result.applied
    assert store.jobs.get(job.id).progress == 0.0


def test_a_progress_write_lands_and_reports_a_pending_cancel(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    before_cancel = store.runs.flush(job.id, "L1", progress())
    assert before_cancel.applied
    assert not before_cancel.cancel_requested
    store.jobs.cancel(job.id)

    result = store.runs.flush(job.id, "L1", progress(60.0, "later"))

    assert result.applied
    assert result.cancel_requested
    written = store.jobs.get(job.id)
    assert (written.progress, written.message, written.items_done) == (60.0, "later", 5)


# -- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [Status.QUEUED, Status.WAITING])
def test_cancelling_a_job_that_has_not_started_cancels_it_at_once(
    tracker: Tracker, source: Status
) -> None:
    store = tracker.store
    job = add(store)
    force(store, job.id, status=source.value)
    cancelled = store.jobs.cancel(job.id, actor="ops")
    assert cancelled.status is Status.CANCELLED
    assert store.jobs.get(job.id).completed_at is not None
    last = store.jobs.events(job.id)[-1]
    assert (last.type, last.actor) == ("cancelled", "ops")


def test_cancelling_a_running_job_only_requests_it_once(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    first = store.jobs.cancel(job.id, actor="ops")
    second = store.jobs.cancel(job.id, actor="ops")
    assert first.status is second.status is Status.RUNNING
    assert first.cancel_requested
    assert second.cancel_requested
    assert event_types(store, job.id) == ["created", "started", "cancel_requested"]


def test_cancelling_a_missing_job_raises_job_not_found(tracker: Tracker) -> None:
    with pytest.raises(JobNotFound):
        tracker.store.jobs.cancel("no-such-job")


# -- listing -----------------------------------------------------------------------------


def ids(page_jobs: Any) -> list[str]:
    return [j.id for j in page_jobs]


def test_list_filters_by_every_field(clocked: Tracker, clock: FakeClock) -> None:
    t = clocked
    first = t.submit("a", owner="o1", priority="high", trigger="scheduled")
    clock.advance(60)
    second = t.submit("b", owner="o1", trigger="api")
    clock.advance(60)
    third = t.submit("a", owner="o2", priority="low")
    t.store.jobs.transition(third.id, Status.RUNNING)
    clock.advance(60)
    fourth = t.submit("b", owner="o2")
    t.cancel(fourth.id)

    assert ids(t.list(owner="o1").jobs) == [second.id, first.id]
    assert ids(t.list(kind="a").jobs) == [third.id, first.id]
    assert ids(t.list(priority=Priority.HIGH).jobs) == [first.id]
    assert ids(t.list(priority="low").jobs) == [third.id]
    assert ids(t.list(trigger="api").jobs) == [second.id]
    assert ids(t.list(status="running").jobs) == [third.id]
    assert ids(t.list(status=[Status.RUNNING, Status.CANCELLED]).jobs) == [fourth.id, third.id]
    assert ids(t.list(status=["queued", "running"], owner="o2").jobs) == [third.id]
    assert ids(t.list(owner="o2", kind="a", status="queued").jobs) == []
    assert t.list(owner="nobody").total_count == 0


def test_list_created_range_includes_its_start_and_excludes_its_end(
    clocked: Tracker, clock: FakeClock
) -> None:
    made = []
    for _ in range(5):
        made.append(clocked.submit("a"))
        clock.advance(60)
    start, end = made[1].created_at, made[3].created_at

    page = clocked.list(created_from=start, created_to=end)

    assert ids(page.jobs) == [made[2].id, made[1].id]
    assert ids(clocked.list(created_from=start).jobs) == ids(reversed(made[1:]))
    assert ids(clocked.list(created_to=end).jobs) == ids(reversed(made[:3]))


def test_list_q_matches_an_id_a_key_or_part_of_the_message(tracker: Tracker) -> None:
    store = tracker.store
    by_message = add(store, message="Processing item 3 of 20")
    by_key = add(store, key="pubsub-123")
    percent = add(store, message="100% done")
    underscore = add(store, message="file a_b.csv")
    decoy = add(store, message="1000 done, fileaxb.csv")

    assert ids(tracker.list(q="item 3 of").jobs) == [by_message.id]
    assert ids(tracker.list(q="pubsub-123").jobs) == [by_key.id]
    assert ids(tracker.list(q=decoy.id).jobs) == [decoy.id]
    assert ids(tracker.list(q="100%").jobs) == [percent.id]
    assert ids(tracker.list(q="a_b").jobs) == [underscore.id]
    assert tracker.list(q="nothing like this").total_count == 0


def test_list_is_newest_first_with_an_exact_total(clocked: Tracker, clock: FakeClock) -> None:
    made = []
    for _ in range(7):
        made.append(clocked.submit("a"))
        clock.advance(1)
    page = clocked.list(limit=3, offset=2)
    assert page.total_count == 7
    assert (page.limit, page.offset) == (3, 2)
    assert ids(page.jobs) == [made[4].id, made[3].id, made[2].id]
    past_the_end = clocked.list(limit=3, offset=10)
    assert past_the_end.total_count == 7
    assert list(past_the_end.jobs) == []


def test_pagination_walks_every_job_exactly_once_even_with_one_shared_created_at(
    clocked: Tracker, clock: FakeClock
) -> None:
    early = clocked.submit("a")
    clock.advance(1)
    batch = clocked.submit_many("b", [{} for _ in range(1000)])
    clock.advance(1)
    late = clocked.submit("a")

    seen: list[str] = []
    offset = 0
    while True:
        page = clocked.list(limit=97, offset=offset)
        assert page.total_count == 1002
        if not page.jobs:
            break
        seen.extend(ids(page.jobs))
        offset += 97

    assert len(seen) == len(set(seen)) == 1002
    assert seen[0] == late.id
    assert seen[-1] == early.id
    assert set(seen[1:-1]) == {j.id for j in batch}


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (1001, 0), (-1, 0), (10, -1)])
def test_list_refuses_an_invalid_limit_or_offset(tracker: Tracker, limit: int, offset: int) -> None:
    with pytest.raises(ValueError, match=r"limit|offset"):
        tracker.list(limit=limit, offset=offset)


def test_active_lists_queued_waiting_and_running_jobs(tracker: Tracker) -> None:
    store = tracker.store
    queued, waiting, running, done = (add(store) for _ in range(4))
    store.jobs.transition(waiting.id, Status.WAITING)
    store.jobs.transition(running.id, Status.RUNNING)
    store.jobs.transition(done.id, Status.CANCELLED)
    assert {j.id for j in tracker.active()} == {queued.id, waiting.id, running.id}


# -- statistics --------------------------------------------------------------------------


def tracked(
    t: Tracker, clock: FakeClock, kind: str, owner: str, seconds: float, failures: int = 0
) -> str:
    """Run a job in place for ``seconds`` of the fake clock; ``failures`` of its 2 items fail."""
    with t.track(kind, owner=owner) as ctx:
        for n in range(2):
            with ctx.item(n):
                if n < failures:
                    raise ValueError("bad item")
        clock.advance(seconds)
    return ctx.job_id


def failing(t: Tracker, clock: FakeClock, kind: str, owner: str, seconds: float) -> None:
    """Run a job in place that raises after ``seconds`` of the fake clock."""

    def handler() -> None:
        with t.track(kind, owner=owner):
            clock.advance(seconds)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler()


@pytest.fixture
def history(clocked: Tracker, clock: FakeClock) -> Tracker:
    """Jobs with hand-picked outcomes and durations.

    | kind | owner | status    | duration |
    |------|-------|-----------|----------|
    | a    | o1    | succeeded | 2        |
    | a    | o1    | succeeded | 4        |
    | a    | o2    | partial   | 6        |
    | b    | o2    | failed    | 8        |
    | b    | o1    | succeeded | 10       |
    | b    | o1    | cancelled | —        |
    | a    | o2    | queued    | —        |
    | b    | o2    | running   | —        |
    | a    | o1    | succeeded | 100      | created 40 days before the others
    """
    t = clocked
    clock.now = T0 - timedelta(days=40)
    tracked(t, clock, "a", "o1", 100)
    clock.now = T0
    tracked(t, clock, "a", "o1", 2)
    tracked(t, clock, "a", "o1", 4)
    tracked(t, clock, "a", "o2", 6, failures=1)
    failing(t, clock, "b", "o2", 8)
    tracked(t, clock, "b", "o1", 10)
    t.cancel(t.submit("b", owner="o1").id)
    t.submit("a", owner="o2")
    t.store.jobs.transition(t.submit("b", owner="o2").id, Status.RUNNING)
    clock.now = T0 + timedelta(hours=1)
    return t


def test_stats_match_a_hand_computed_fixture(history: Tracker) -> None:
    stats = history.stats(days=30)

    assert stats.days == 30
    assert stats.total_jobs == 8
    assert stats.jobs_by_status == {
        "succeeded": 3,
        "partial": 1,
        "failed": 1,
        "cancelled": 1,
        "queued": 1,
        "running": 1,
    }
    assert stats.jobs_by_kind == {"a": 4, "b": 4}
    # Succeeded among the jobs that ran to an outcome (cancelled jobs did not): 3 of 5.
    assert stats.success_rate == pytest.approx(0.6)
    assert stats.average_duration_seconds == pytest.approx(6.0)
    # Nearest rank over [2, 4, 6, 8, 10]: the 3rd value and the 5th.
    assert stats.p50_duration_seconds == pytest.approx(6.0)
    assert stats.p95_duration_seconds == pytest.approx(10.0)
    assert stats.total_processing_seconds == pytest.approx(30.0)
    assert stats.active_jobs == 2


def test_stats_for_one_owner(history: Tracker) -> None:
    stats = history.stats(days=30, owner="o1")
    assert stats.total_jobs == 4
    assert stats.jobs_by_status == {"succeeded": 3, "cancelled": 1}
    assert stats.jobs_by_kind == {"a": 2, "b": 2}
    assert stats.success_rate == pytest.approx(1.0)
    assert stats.average_duration_seconds == pytest.approx(16 / 3)
    assert stats.p50_duration_seconds == pytest.approx(4.0)
    assert stats.p95_duration_seconds == pytest.approx(10.0)
    assert stats.total_processing_seconds == pytest.approx(16.0)
    assert stats.active_jobs == 0


def test_stats_for_one_kind(history: Tracker) -> None:
    stats = history.stats(days=30, kind="b")
    assert stats.total_jobs == 4
    assert stats.jobs_by_status == {"failed": 1, "succeeded": 1, "cancelled": 1, "running": 1}
    assert stats.jobs_by_kind == {"b": 4}
    assert stats.success_rate == pytest.approx(0.5)
    assert stats.average_duration_seconds == pytest.approx(9.0)
    assert stats.p50_duration_seconds == pytest.approx(8.0)
    assert stats.p95_duration_seconds == pytest.approx(10.0)
    assert stats.total_processing_seconds == pytest.approx(18.0)
    assert stats.active_jobs == 1


def test_stats_window_reaches_back_the_given_number_of_days(history: Tracker) -> None:
    stats = history.stats(days=60, owner="o1", kind="a")
    assert stats.total_jobs == 3
    assert stats.total_processing_seconds == pytest.approx(106.0)
    assert stats.p95_duration_seconds == pytest.approx(100.0)


def test_stats_of_an_empty_store_have_no_rates_or_durations(tracker: Tracker) -> None:
    stats = tracker.stats()
    assert stats.total_jobs == 0
    assert stats.jobs_by_status == {}
    assert stats.success_rate is None
    assert stats.average_duration_seconds is None
    assert stats.p50_duration_seconds is None
    assert stats.p95_duration_seconds is None
    assert stats.total_processing_seconds == 0.0
    assert stats.active_jobs == 0


def test_stats_refuse_a_window_of_less_than_a_day(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="days"):
        tracker.stats(days=0)


# -- EXPLAIN -----------------------------------------------------------------------------


def plan(store: Store, statement: sa.Select[Any]) -> str:
    """The query plan of ``statement``; on PostgreSQL as if every table were large."""
    sql = statement.compile(
        dialect=store.database.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    with store.database.engine.connect() as conn, conn.begin():
        if store.database.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {sql}")
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(str(row[-1]) for row in rows)


def assert_uses_index(store: Store, statement: sa.Select[Any], index: str) -> str:
    text = plan(store, statement)
    if store.database.dialect == "sqlite":
        assert f"USING INDEX {index}" in text or f"USING COVERING INDEX {index}" in text, text
    else:
        scans = ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
        assert any(scan in text for scan in scans), text
        assert index in text, text
    return text


def listing(filters: Filters) -> sa.Select[Any]:
    """The page query ``Store.find`` runs for ``filters``."""
    return (
        sa.select(*JOB_COLUMNS)
        .where(*listing_conditions(filters))
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(50)
        .offset(0)
    )


def counting(filters: Filters) -> sa.Select[Any]:
    """The count query ``Store.find`` runs for ``filters``."""
    return sa.select(sa.func.count()).select_from(jobs).where(*listing_conditions(filters))


def has_sort(store: Store, text: str) -> bool:
    return "TEMP B-TREE" in text if store.database.dialect == "sqlite" else "Sort" in text


def test_listing_by_owner_reads_the_owner_index_in_order(tracker: Tracker) -> None:
    store = tracker.store
    text = assert_uses_index(store, listing(Filters(owner="o1")), "ix_jobs_owner_created_at_id")
    assert not has_sort(store, text), text
    assert_uses_index(store, counting(Filters(owner="o1")), "ix_jobs_owner_created_at_id")


def test_listing_by_status_reads_the_status_index_in_order(tracker: Tracker) -> None:
    store = tracker.store
    one = Filters(statuses=[Status.RUNNING])
    text = assert_uses_index(store, listing(one), "ix_jobs_status_created_at_id")
    assert not has_sort(store, text), text
    # Counting may read any index that starts with the status (the claim index does too).
    assert_uses_index(store, counting(one), "ix_jobs_")
    several = Filters(statuses=[Status.QUEUED, Status.WAITING, Status.RUNNING])
    assert_uses_index(store, listing(several), "ix_jobs_")


def test_listing_by_kind_reads_the_kind_index(tracker: Tracker) -> None:
    store = tracker.store
    text = assert_uses_index(store, listing(Filters(kind="a")), "ix_jobs_kind_created_at_id")
    assert not has_sort(store, text), text


def test_the_claim_query_reads_the_claim_index_without_sorting(tracker: Tracker) -> None:
    store = tracker.store
    claim = (
        sa.select(jobs.c.id)
        .where(jobs.c.status == Status.QUEUED.value, jobs.c.run_after <= T0)
        .order_by(jobs.c.priority.desc(), jobs.c.run_after)
        .limit(10)
    )
    text = assert_uses_index(store, claim, "ix_jobs_claim")
    assert not has_sort(store, text), text


def test_the_stats_window_reads_an_index(tracker: Tracker) -> None:
    store = tracker.store
    window = StatsQuery(T0, None, None).conditions()
    statement = sa.select(jobs.c.status, sa.func.count()).where(*window).group_by(jobs.c.status)
    assert_uses_index(store, statement, "ix_jobs_")


# -- events ------------------------------------------------------------------------------


def test_events_page_through_a_jobs_history_in_order(tracker: Tracker) -> None:
    store = tracker.store
    job = start(store)
    lines = [NewEvent("log", f"line {n}") for n in range(5)]
    assert store.runs.flush(job.id, "L1", progress(), events=lines).applied
    everything = store.jobs.events(job.id)
    assert [e.type for e in everything] == ["created", "started"] + ["log"] * 5
    assert [e.message for e in everything[2:]] == [f"line {n}" for n in range(5)]
    after = store.jobs.events(job.id, after=everything[3].id, limit=2)
    assert [e.message for e in after] == ["line 2", "line 3"]
