"""Context: coalesced progress, per-item outcomes and cooperative cancellation of a running job."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobtrail import Cancelled, Context, Job, Status, Tracker
from tests.waiting import event_types


@pytest.fixture
def eager(database_url: str) -> Iterator[Tracker]:
    """A tracker that writes (and looks for a cancel) on every progress call and checkpoint."""
    with Tracker(database_url, flush_interval=0) as t:
        yield t


# -- progress ----------------------------------------------------------------------------


def test_twenty_threads_advancing_one_context_lose_no_count(tracker: Tracker) -> None:
    threads, per_thread = 20, 500
    start = threading.Barrier(threads)

    def work(ctx: Context) -> None:
        start.wait(timeout=10)
        for _ in range(per_thread):
            ctx.advance()

    with tracker.track("bulk") as ctx, ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, ctx) for _ in range(threads)]:
            future.result(timeout=60)

    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert job.items_done == threads * per_thread == 10_000
    assert job.items_succeeded == 10_000


def test_a_message_per_item_becomes_a_handful_of_progress_events(database_url: str) -> None:
    with Tracker(database_url, flush_interval=10) as slow:
        with slow.track("loop") as ctx:
            for i in range(1000):
                ctx.progress(message=f"item {i}")
            unwritten = slow.get(ctx.job_id)
        job = slow.get(ctx.job_id)
        events = slow.events(ctx.job_id)

    assert unwritten.message is None  # coalesced in memory, not written per call
    progress_events = [e for e in events if e.type == "progress"]
    assert 1 <= len(progress_events) <= 3
    assert progress_events[-1].message == "item 999"
    assert job.message == "item 999"
    assert job.status is Status.SUCCEEDED
    assert [e.type for e in events] == ["created", "started", "progress", "succeeded"]


def test_flush_writes_pending_progress_at_once(database_url: str) -> None:
    with Tracker(database_url, flush_interval=10) as slow, slow.track("t") as ctx:
        ctx.progress(40, "Fetching", stage="fetch")
        ctx.flush()
        job = slow.get(ctx.job_id)
        assert (job.progress, job.message, job.progress_data) == (
            40.0,
            "Fetching",
            {"stage": "fetch"},
        )
        assert job.status is Status.RUNNING


def test_progress_is_clamped_and_its_data_merged(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        ctx.progress(150)
        assert eager.get(ctx.job_id).progress == 100.0
        ctx.progress(-5, stage="fetch")
        ctx.progress(page=2)
        job = eager.get(ctx.job_id)
    assert job.progress == 0.0
    assert job.progress_data == {"stage": "fetch", "page": 2}


def test_progress_is_derived_from_items_once_a_total_is_known(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        ctx.set_total(4)
        for n in range(3):
            with ctx.item(n):
                pass
        ctx.flush()
        running = eager.get(ctx.job_id)
    assert (running.items_total, running.items_done, running.progress) == (4, 3, 75.0)
    assert running.eta_seconds is not None


def test_log_appends_an_event_with_its_data(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        ctx.log("fetched the listings", pages=3)
    logs = [e for e in eager.events(ctx.job_id) if e.type == "log"]
    assert [(e.message, e.data) for e in logs] == [("fetched the listings", {"pages": 3})]


# -- items -------------------------------------------------------------------------------


def test_items_sets_the_total_from_a_collection(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        seen = list(ctx.items(["a", "b", "c"]))
        assert eager.get(ctx.job_id).items_total == 3
    assert seen == ["a", "b", "c"]


def test_items_of_a_generator_leave_the_total_unknown(eager: Tracker) -> None:
    with eager.track("t") as ctx:
        for element in ctx.items(str(n) for n in range(3)):
            with ctx.item(element):
                pass
    job = eager.get(ctx.job_id)
    assert job.items_total is None
    assert job.items_done == 3


def test_a_job_whose_items_all_succeed_succeeds(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        for row in ctx.items(["a", "b", "c"]):
            with ctx.item(row):
                pass
    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert (job.items_total, job.items_done, job.items_succeeded) == (3, 3, 3)
    assert job.progress == 100.0
    assert job.error_message is None
    assert tracker.failed_items(job.id) == []


def test_a_job_that_counted_items_reports_zero_failures_not_none(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        for row in ctx.items(["a", "b"]):
            with ctx.item(row):
                pass
    assert tracker.get(ctx.job_id).items_failed == 0


def test_a_failing_item_is_recorded_and_the_loop_goes_on(tracker: Tracker) -> None:
    processed: list[str] = []
    with tracker.track("import") as ctx:
        for row in ctx.items(["a", "b", "c", "d"]):
            with ctx.item(row):
                if row in ("b", "d"):
                    raise ValueError(f"row {row} is malformed")
                processed.append(row)

    job = tracker.get(ctx.job_id)
    assert processed == ["a", "c"]
    assert job.status is Status.PARTIAL
    assert (job.items_total, job.items_done) == (4, 4)
    assert (job.items_succeeded, job.items_failed) == (2, 2)
    assert job.error_message == "2 of 4 items failed"
    assert job.error_details == {"failed_items": ["b", "d"], "failed_items_count": 2}
    failed = [(i.item_id, i.error_type, i.message) for i in tracker.failed_items(job.id)]
    assert failed == [
        ("b", "ValueError", "row b is malformed"),
        ("d", "ValueError", "row d is malformed"),
    ]
    item_events = [e for e in tracker.events(job.id) if e.type == "item_failed"]
    assert [e.data for e in item_events] == [
        {"item_id": "b", "error_type": "ValueError"},
        {"item_id": "d", "error_type": "ValueError"},
    ]
    assert event_types(tracker, job.id)[-1] == "partial"


def test_a_job_whose_items_all_fail_fails(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        for row in ctx.items([1, 2, 3]):
            with ctx.item(row):
                raise KeyError(row)
    job = tracker.get(ctx.job_id)
    assert job.status is Status.FAILED
    assert (job.items_succeeded, job.items_failed) == (0, 3)
    assert [i.item_id for i in tracker.failed_items(job.id)] == ["1", "2", "3"]
    assert {i.error_type for i in tracker.failed_items(job.id)} == {"KeyError"}
    assert job.error_details["failed_items_count"] == 3


# -- cancellation ------------------------------------------------------------------------


def check(ctx: Context, ran: list[str]) -> None:
    ctx.check()
    ran.append("after check")


def report(ctx: Context, ran: list[str]) -> None:
    ctx.progress(50, "halfway")
    ran.append("after progress")


def enter_item(ctx: Context, ran: list[str]) -> None:
    with ctx.item("next"):
        ran.append("inside the item")


CHECKPOINTS: dict[str, Callable[[Context, list[str]], None]] = {
    "check": check,
    "progress": report,
    "item": enter_item,
}


def job_ended_by(
    tracker: Tracker,
    body: Callable[[Context], None],
    expected: type[BaseException] = Cancelled,
    match: str | None = None,
) -> Job:
    """Run ``body`` in ``tracker.track``; it must raise ``expected``. Returns the job as stored."""
    contexts: list[Context] = []

    def handler() -> None:
        with tracker.track("t") as ctx:
            contexts.append(ctx)
            body(ctx)

    with pytest.raises(expected, match=match):
        handler()
    return tracker.get(contexts[0].job_id)


@pytest.mark.parametrize("checkpoint", list(CHECKPOINTS))
def test_after_a_cancel_the_next_checkpoint_raises_cancelled(
    eager: Tracker, checkpoint: str
) -> None:
    ran: list[str] = []

    def body(ctx: Context) -> None:
        requested = eager.cancel(ctx.job_id, actor="ops")
        assert requested.cancel_requested
        assert requested.status is Status.RUNNING
        CHECKPOINTS[checkpoint](ctx, ran)

    job = job_ended_by(eager, body)

    assert ran == []
    assert job.status is Status.CANCELLED
    assert job.completed_at is not None
    assert eager.failed_items(job.id) == []
    events = eager.events(job.id)
    assert events[-1].type == "cancelled"
    assert [e.actor for e in events if e.type == "cancel_requested"] == ["ops"]


def test_a_cancel_is_seen_at_the_next_write(tracker: Tracker) -> None:
    def body(ctx: Context) -> None:
        tracker.cancel(ctx.job_id)
        ctx.flush()
        assert ctx.cancelled
        ctx.check()

    assert job_ended_by(tracker, body).status is Status.CANCELLED


def test_checks_alone_see_a_cancel_within_a_flush_interval(tracker: Tracker) -> None:
    def body(ctx: Context) -> None:
        tracker.cancel(ctx.job_id)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ctx.check()

    assert job_ended_by(tracker, body).status is Status.CANCELLED


def test_a_cancel_from_another_thread_stops_an_item_loop(tracker: Tracker) -> None:
    started = threading.Event()
    job_ids: list[str] = []
    processed: list[int] = []

    def run() -> None:
        deadline = time.monotonic() + 10
        with tracker.track("loop") as ctx:
            job_ids.append(ctx.job_id)
            started.set()
            while time.monotonic() < deadline:
                with ctx.item(len(processed)):
                    processed.append(len(processed))

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        assert started.wait(timeout=10)
        tracker.cancel(job_ids[0])
        with pytest.raises(Cancelled):
            future.result(timeout=20)

    job = tracker.get(job_ids[0])
    assert job.status is Status.CANCELLED
    assert job.items_done == len(processed)


def test_a_job_taken_from_this_runner_keeps_what_the_other_party_decided(
    tracker: Tracker,
) -> None:
    def body(ctx: Context) -> None:
        failed = {"error_message": "worker lost"}
        tracker.store.jobs.transition(ctx.job_id, Status.FAILED, values=failed)
        ctx.progress(90, "late write")
        ctx.flush()
        ctx.check()

    job = job_ended_by(tracker, body, match="no longer held")

    assert job.status is Status.FAILED
    assert job.error_message == "worker lost"
    assert job.message is None


def test_progress_data_no_database_stores_is_refused_at_the_call(tracker: Tracker) -> None:
    from jobtrail.exceptions import InvalidData

    with tracker.track("import") as ctx:
        ctx.progress(10, page=1)
        with pytest.raises(InvalidData, match="progress data: numbers must be finite"):
            ctx.progress(20, "ratio", ratio=float("nan"))
        with pytest.raises(InvalidData, match="progress data: not JSON: a set"):
            ctx.progress(30, seen={1, 2})
        ctx.progress(40, note="tab\there, nul\x00 cleaned")

    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert job.progress_data == {"page": 1, "note": "tab\there, nul\\x00 cleaned"}
