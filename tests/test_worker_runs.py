"""The in-process worker: claims, outcomes, retries, cancellation, graceful stop, rescue, stalls."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobtrail import (
    Context,
    IllegalTransition,
    JobTimeout,
    Priority,
    Status,
    Tracker,
)
from jobtrail.worker import Worker
from tests.rows import force
from tests.waiting import event_types, until


def worker(tracker: Tracker, concurrency: int = 1, **options: Any) -> Worker:
    """A worker that looks for new jobs every 10 ms when idle (``options`` override)."""
    return tracker.worker(concurrency, **{"poll_interval": 0.01, **options})


def run_until_idle(tracker: Tracker, concurrency: int = 1) -> None:
    """Run every due job in a burst worker and return when none is left."""
    worker(tracker, concurrency).run(burst=True)


# -- running handlers -------------------------------------------------------------------


def test_a_handler_gets_its_payload_as_keyword_arguments_and_its_result_is_stored(
    tracker: Tracker,
) -> None:
    seen: list[tuple[str, int]] = []

    @tracker.job("greet")
    def greet(ctx: Context, name: str, times: int = 1) -> dict[str, str]:
        seen.append((name, times))
        return {"greeting": " ".join([f"hello {name}"] * times)}

    job = greet.submit(name="Ada", times=2)
    with worker(tracker, concurrency=2):
        done = tracker.wait(job.id, timeout=10)

    assert seen == [("Ada", 2)]
    assert done.status is Status.SUCCEEDED
    assert done.result == {"greeting": "hello Ada hello Ada"}
    assert done.attempt == 1
    assert done.progress == 100.0
    assert done.started_at is not None
    assert done.completed_at is not None
    assert done.duration_seconds == pytest.approx(
        (done.completed_at - done.started_at).total_seconds()
    )
    assert event_types(tracker, job.id) == ["created", "started", "succeeded"]


def test_a_handler_exception_is_retried_after_a_backoff_and_succeeds_on_attempt_2(
    tracker: Tracker,
) -> None:
    attempts: list[int] = []

    @tracker.job("flaky", max_attempts=3, retry_backoff=0.01)
    def flaky(ctx: Context) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("upstream hung up")
        return "ok"

    job = flaky.submit()
    with worker(tracker):
        done = tracker.wait(job.id, timeout=10)

    assert attempts == [1, 2]
    assert done.status is Status.SUCCEEDED
    assert done.attempt == 2
    assert done.result == "ok"
    events = tracker.events(job.id)
    assert [e.type for e in events] == ["created", "started", "retrying", "started", "succeeded"]
    retrying, second_start = events[2], events[3]
    assert retrying.message is not None
    assert "attempt 1 of 3 failed" in retrying.message
    assert "ConnectionError: upstream hung up" in retrying.message
    # The retry was scheduled for later than the failure, and not claimed before it was due.
    assert done.run_after > retrying.at
    assert second_start.at >= done.run_after
    assert second_start.message == "attempt 2"


def test_a_job_that_fails_every_attempt_ends_failed_with_the_error_type_message_and_traceback(
    tracker: Tracker,
) -> None:
    @tracker.job("doomed", max_attempts=3, retry_backoff=0.01)
    def doomed(ctx: Context) -> None:
        raise ValueError(f"bad input on attempt {ctx.attempt}")

    job = doomed.submit()
    with worker(tracker):
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.FAILED
    assert done.attempt == 3
    assert done.error_message == "ValueError: bad input on attempt 3"
    assert done.error_details["type"] == "ValueError"
    traceback = done.error_details["traceback"]
    assert "Traceback (most recent call last)" in traceback
    assert "in doomed" in traceback
    assert 'raise ValueError(f"bad input on attempt {ctx.attempt}")' in traceback
    assert event_types(tracker, job.id) == [
        "created",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "failed",
    ]


def test_a_job_whose_items_partly_fail_ends_partial_and_one_whose_items_all_fail_ends_failed(
    tracker: Tracker,
) -> None:
    @tracker.job("sync")
    def sync(ctx: Context, items: list[str], bad: list[str]) -> int:
        for item in ctx.items(items):
            with ctx.item(item):
                if item in bad:
                    raise LookupError(f"{item} is gone")
        return len(items)

    partial = sync.submit(items=["a", "b", "c", "d"], bad=["b", "d"])
    failed = sync.submit(items=["x", "y"], bad=["x", "y"])
    run_until_idle(tracker)

    job = tracker.get(partial.id)
    assert job.status is Status.PARTIAL
    assert (job.items_total, job.items_done, job.items_succeeded, job.items_failed) == (4, 4, 2, 2)
    assert job.result == 4
    assert job.error_message == "2 of 4 items failed"
    assert job.error_details["failed_items"] == ["b", "d"]
    assert [(i.item_id, i.error_type, i.message) for i in tracker.failed_items(partial.id)] == [
        ("b", "LookupError", "b is gone"),
        ("d", "LookupError", "d is gone"),
    ]
    assert event_types(tracker, partial.id).count("item_failed") == 2

    job = tracker.get(failed.id)
    assert job.status is Status.FAILED
    assert (job.items_succeeded, job.items_failed) == (0, 2)
    assert [i.item_id for i in tracker.failed_items(failed.id)] == ["x", "y"]


def test_urgent_jobs_are_claimed_before_high_normal_and_low_ones_then_oldest_first(
    tracker: Tracker,
) -> None:
    order: list[str] = []

    @tracker.job("note")
    def note(ctx: Context, name: str) -> None:
        order.append(name)

    for name, priority in [
        ("low-1", Priority.LOW),
        ("normal-1", Priority.NORMAL),
        ("urgent-1", Priority.URGENT),
        ("low-2", Priority.LOW),
        ("high-1", Priority.HIGH),
        ("urgent-2", Priority.URGENT),
    ]:
        note.submit(name=name, priority=priority)
    run_until_idle(tracker, concurrency=1)

    assert order == ["urgent-1", "urgent-2", "high-1", "normal-1", "low-1", "low-2"]


def test_a_worker_claims_only_the_kinds_it_has_handlers_for(
    tracker: Tracker, database_url: str
) -> None:
    ran: list[str] = []

    @tracker.job("mine")
    def mine(ctx: Context) -> None:
        ran.append("mine")

    @tracker.job("theirs")
    def theirs(ctx: Context) -> None:
        ran.append("theirs")

    mine_job, theirs_job = mine.submit(), theirs.submit()
    with Tracker(database_url, flush_interval=0.05) as other:

        @other.job("mine")
        def mine_elsewhere(ctx: Context) -> None:
            ran.append("mine elsewhere")

        run_until_idle(other)

    assert ran == ["mine elsewhere"]
    assert tracker.get(mine_job.id).status is Status.SUCCEEDED
    unclaimed = tracker.get(theirs_job.id)
    assert unclaimed.status is Status.QUEUED
    assert unclaimed.attempt == 0


def test_a_burst_worker_runs_every_due_job_and_leaves_jobs_that_are_not_due(
    tracker: Tracker,
) -> None:
    @tracker.job("square")
    def square(ctx: Context, n: int) -> int:
        return n * n

    due = [square.submit(n=n) for n in range(8)]
    later = square.submit(n=99, run_after=datetime.now(UTC) + timedelta(hours=1))
    run_until_idle(tracker, concurrency=3)

    assert [tracker.get(j.id).result for j in due] == [n * n for n in range(8)]
    assert all(tracker.get(j.id).status is Status.SUCCEEDED for j in due)
    assert tracker.get(later.id).status is Status.QUEUED


def test_wait_raises_job_timeout_while_the_job_has_not_finished(tracker: Tracker) -> None:
    @tracker.job("idle")
    def idle(ctx: Context) -> None: ...

    job = idle.submit()
    started = time.monotonic()
    with pytest.raises(JobTimeout) as raised:
        tracker.wait(job.id, timeout=0.2)

    assert time.monotonic() - started >= 0.2
    assert raised.value.job_id == job.id
    assert raised.value.status is Status.QUEUED


# -- cancellation and timeouts ----------------------------------------------------------


def test_cancelling_a_queued_job_cancels_it_at_once_and_it_never_runs(tracker: Tracker) -> None:
    ran: list[str] = []

    @tracker.job("never")
    def never(ctx: Context) -> None:
        ran.append(ctx.job_id)

    job = never.submit()
    cancelled = tracker.cancel(job.id, actor="ops")
    run_until_idle(tracker)

    assert cancelled.status is Status.CANCELLED
    assert ran == []
    assert tracker.get(job.id).status is Status.CANCELLED
    events = tracker.events(job.id)
    assert [e.type for e in events] == ["created", "cancelled"]
    assert events[-1].actor == "ops"


def spin_until_stopped(ctx: Context, checkpoint: str, started: threading.Event) -> str:
    """Loop on one kind of checkpoint until it raises; give up (and return) after 10 s."""
    deadline = time.monotonic() + 10
    n = 0
    while time.monotonic() < deadline:
        started.set()
        if checkpoint == "check":
            ctx.check()
        elif checkpoint == "item":
            with ctx.item(n):
                pass
        else:
            ctx.progress(message="spinning")
        n += 1
        time.sleep(0.005)
    return "never stopped"


@pytest.mark.parametrize("checkpoint", ["check", "item", "progress"])
def test_cancelling_a_running_job_stops_it_at_its_next_checkpoint(
    tracker: Tracker, checkpoint: str
) -> None:
    started = threading.Event()

    @tracker.job("spin")
    def spin(ctx: Context, checkpoint: str) -> str:
        return spin_until_stopped(ctx, checkpoint, started)

    job = spin.submit(checkpoint=checkpoint)
    with worker(tracker):
        assert started.wait(10)
        requested = tracker.cancel(job.id, actor="ops")
        assert requested.status is Status.RUNNING
        assert requested.cancel_requested
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.CANCELLED
    assert done.result is None
    types = event_types(tracker, job.id)
    assert types[-1] == "cancelled"
    assert types.count("cancel_requested") == 1
    assert types.index("cancel_requested") < types.index("cancelled")


@pytest.mark.parametrize("terminal", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_cancelling_a_finished_job_is_an_illegal_transition(
    tracker: Tracker, terminal: Status
) -> None:
    @tracker.job("ends")
    def ends(ctx: Context, fail: bool) -> None:
        if fail:
            raise RuntimeError("no")

    job = ends.submit(fail=terminal is Status.FAILED)
    if terminal is Status.CANCELLED:
        tracker.cancel(job.id)
    run_until_idle(tracker)
    assert tracker.get(job.id).status is terminal

    with pytest.raises(IllegalTransition) as raised:
        tracker.cancel(job.id)

    assert raised.value.current is terminal
    assert tracker.get(job.id).status is terminal


def test_a_job_past_its_timeout_ends_failed_as_timed_out(tracker: Tracker) -> None:
    @tracker.job("slow", timeout=0.3)
    def slow(ctx: Context) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ctx.check()
            time.sleep(0.01)
        return "ran to the end"

    job = slow.submit()
    with worker(tracker):
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.FAILED
    assert done.error_message is not None
    assert "timed out" in done.error_message
    assert done.error_details["type"] == "TimedOut"
    assert done.result is None
    assert done.duration_seconds is not None
    assert 0.3 <= done.duration_seconds < 5
    assert event_types(tracker, job.id)[-1] == "failed"


# -- manual retries ---------------------------------------------------------------------


def test_retrying_a_failed_job_queues_a_new_job_that_points_at_the_old_one(
    tracker: Tracker,
) -> None:
    broken = {"upstream": True}

    @tracker.job("fetch")
    def fetch(ctx: Context, url: str) -> str:
        if broken["upstream"]:
            raise ConnectionError(f"{url} refused")
        return f"fetched {url}"

    old = fetch.submit(url="https://example.test/a", owner="acme")
    run_until_idle(tracker)
    assert tracker.get(old.id).status is Status.FAILED

    broken["upstream"] = False
    new = tracker.retry(old.id, actor="ops")

    assert new.id != old.id
    assert new.status is Status.QUEUED
    assert new.retry_of == old.id
    assert new.trigger == "retry"
    assert (new.kind, new.payload, new.owner) == (old.kind, old.payload, old.owner)
    note = tracker.events(old.id)[-1]
    assert note.type == "log"
    assert note.message == f"retried as {new.id}"
    assert note.actor == "ops"

    run_until_idle(tracker)
    assert tracker.get(new.id).status is Status.SUCCEEDED
    assert tracker.get(new.id).result == "fetched https://example.test/a"
    assert tracker.get(old.id).status is Status.FAILED


def test_a_succeeded_running_or_queued_job_cannot_be_retried(tracker: Tracker) -> None:
    release = threading.Event()
    started = threading.Event()

    @tracker.job("hold")
    def hold(ctx: Context, block: bool) -> None:
        if block:
            started.set()
            release.wait(10)

    succeeded = hold.submit(block=False)
    run_until_idle(tracker)
    queued = hold.submit(block=False, run_after=datetime.now(UTC) + timedelta(hours=1))
    running = hold.submit(block=True)
    with worker(tracker):
        assert started.wait(10)
        for job, status in [
            (succeeded, Status.SUCCEEDED),
            (running, Status.RUNNING),
            (queued, Status.QUEUED),
        ]:
            with pytest.raises(IllegalTransition) as raised:
                tracker.retry(job.id)
            assert raised.value.current is status
        release.set()
        tracker.wait(running.id, timeout=10)

    assert tracker.list(trigger="retry").total_count == 0


def test_a_retry_of_only_the_failed_items_runs_just_those_and_counts_the_whole_set(
    tracker: Tracker,
) -> None:
    failing = {"b", "e"}
    runs: list[list[str]] = []

    @tracker.job("batch")
    def batch(ctx: Context, names: list[str]) -> None:
        ran: list[str] = []
        runs.append(ran)
        for name in ctx.items(names):
            with ctx.item(name):
                ran.append(name)
                if name in failing:
                    raise ValueError(f"cannot process {name}")

    names = ["a", "b", "c", "d", "e", "f"]
    first = batch.submit(names=names)
    run_until_idle(tracker)
    assert tracker.get(first.id).status is Status.PARTIAL

    failing.discard("b")  # "b" works now; "e" still fails
    second = tracker.retry(first.id, only_failed_items=True)
    run_until_idle(tracker)
    assert runs[1] == ["b", "e"]
    job = tracker.get(second.id)
    assert job.status is Status.PARTIAL
    assert (job.items_total, job.items_done, job.items_succeeded, job.items_failed) == (6, 6, 5, 1)
    assert [i.item_id for i in tracker.failed_items(second.id)] == ["e"]

    failing.clear()
    third = tracker.retry(second.id, only_failed_items=True)
    run_until_idle(tracker)
    assert runs == [names, ["b", "e"], ["e"]]
    job = tracker.get(third.id)
    assert job.status is Status.SUCCEEDED
    assert (third.retry_of, second.retry_of) == (second.id, first.id)
    assert job.progress == 100.0
    assert tracker.failed_items(third.id) == []
    assert (job.items_total, job.items_done, job.items_succeeded, job.items_failed) == (6, 6, 6, 0)


def test_a_retry_of_a_retry_points_at_the_retry_it_repeats(tracker: Tracker) -> None:
    @tracker.job("always_fails")
    def always_fails(ctx: Context) -> None:
        raise RuntimeError("still broken")

    original = always_fails.submit()
    run_until_idle(tracker)
    first = tracker.retry(original.id)
    run_until_idle(tracker)
    second = tracker.retry(first.id)
    run_until_idle(tracker)

    chain = [tracker.get(j.id) for j in (original, first, second)]
    assert [j.retry_of for j in chain] == [None, original.id, first.id]
    assert [j.trigger for j in chain] == ["manual", "retry", "retry"]
    assert [j.status for j in chain] == [Status.FAILED] * 3
    assert len({j.id for j in chain}) == 3


def test_a_plain_retry_of_a_partial_job_runs_every_item_again(tracker: Tracker) -> None:
    runs: list[list[str]] = []

    @tracker.job("batch")
    def batch(ctx: Context, names: list[str]) -> None:
        ran: list[str] = []
        runs.append(ran)
        for name in ctx.items(names):
            with ctx.item(name):
                ran.append(name)
                if len(runs) == 1 and name == "y":
                    raise ValueError("first time only")

    first = batch.submit(names=["x", "y", "z"])
    run_until_idle(tracker)
    retry = tracker.retry(first.id)
    run_until_idle(tracker)

    assert runs == [["x", "y", "z"], ["x", "y", "z"]]
    assert tracker.get(retry.id).status is Status.SUCCEEDED


# -- graceful stop ----------------------------------------------------------------------


def test_stopping_a_worker_requeues_a_job_at_its_next_item_without_charging_the_attempt(
    tracker: Tracker,
) -> None:
    started = threading.Event()
    attempts: list[int] = []

    @tracker.job("walk")
    def walk(ctx: Context, count: int) -> int:
        attempts.append(ctx.attempt)
        for n in ctx.items(range(count)):
            with ctx.item(n):
                started.set()
                time.sleep(0.01)
        return count

    job = walk.submit(count=100)
    running = worker(tracker, grace_period=5).start()
    assert started.wait(10)
    stopping = time.monotonic()
    running.stop()

    assert time.monotonic() - stopping < 2, "the handler should stop at its next item"
    assert not running.alive
    interrupted = tracker.get(job.id)
    assert interrupted.status is Status.QUEUED
    assert interrupted.completed_at is None
    events = tracker.events(job.id)
    assert events[-1].type == "interrupted"
    assert events[-1].message is not None
    assert "shutting down" in events[-1].message
    assert "failed" not in [e.type for e in events]

    run_until_idle(tracker)
    done = tracker.get(job.id)
    assert done.status is Status.SUCCEEDED
    assert done.result == 100
    assert attempts == [1, 1]
    assert done.attempt == 1
    starts = [e.message for e in tracker.events(job.id) if e.type == "started"]
    assert starts == ["attempt 1", "attempt 1"]


def test_a_short_job_finishes_during_the_grace_period(tracker: Tracker) -> None:
    started = threading.Event()

    @tracker.job("short")
    def short(ctx: Context) -> str:
        started.set()
        time.sleep(0.3)  # the job's own work: no checkpoint to stop at
        return "finished"

    job = short.submit()
    running = worker(tracker, grace_period=5).start()
    assert started.wait(10)
    stop_called_at = datetime.now(UTC)
    running.stop()

    done = tracker.get(job.id)
    assert done.status is Status.SUCCEEDED
    assert done.result == "finished"
    assert done.completed_at is not None
    assert done.completed_at > stop_called_at
    assert (datetime.now(UTC) - stop_called_at).total_seconds() < 5
    assert "interrupted" not in event_types(tracker, job.id)


def test_a_job_still_running_after_the_grace_period_is_requeued_and_its_late_result_dropped(
    tracker: Tracker,
) -> None:
    started = threading.Event()
    release = threading.Event()

    @tracker.job("stubborn")
    def stubborn(ctx: Context) -> str:
        started.set()
        release.wait(10)  # ignores every checkpoint
        return "too late"

    job = stubborn.submit()
    running = worker(tracker, grace_period=0.2).start()
    assert started.wait(10)
    stopping = time.monotonic()
    running.stop()

    assert 0.2 <= time.monotonic() - stopping < 3
    requeued = tracker.get(job.id)
    assert requeued.status is Status.QUEUED
    last = tracker.events(job.id)[-1]
    assert last.type == "interrupted"
    assert last.message is not None
    assert "grace period" in last.message

    release.set()
    until(lambda: not running.alive, what="the stubborn handler to return")
    after = tracker.get(job.id)
    assert after.status is Status.QUEUED
    assert after.result is None
    assert event_types(tracker, job.id)[-1] == "interrupted"


# -- heartbeats, rescue and stalls ------------------------------------------------------


def test_a_job_without_progress_for_stall_after_is_flagged_stalled(tracker: Tracker) -> None:
    started = threading.Event()
    release = threading.Event()

    @tracker.job("stuck", stall_after=0.3)
    def stuck(ctx: Context) -> None:
        started.set()
        release.wait(10)

    job = stuck.submit()
    with worker(tracker, heartbeat_interval=0.1):
        assert started.wait(10)
        flagged = until(lambda: tracker.get(job.id).stalled, timeout=5, what="the stalled flag")
        assert flagged
        assert tracker.get(job.id).status is Status.RUNNING
        stalled = [e for e in tracker.events(job.id) if e.type == "stalled"]
        assert len(stalled) == 1
        assert stalled[0].message is not None
        assert "no progress" in stalled[0].message
        release.set()
        assert tracker.wait(job.id, timeout=10).status is Status.SUCCEEDED


def test_a_job_whose_progress_keeps_moving_is_never_flagged_stalled(tracker: Tracker) -> None:
    @tracker.job("busy", stall_after=0.3)
    def busy(ctx: Context) -> None:
        for n in ctx.items(range(40)):
            with ctx.item(n):
                time.sleep(0.025)

    job = busy.submit()
    with worker(tracker, heartbeat_interval=0.1):
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.SUCCEEDED
    assert not done.stalled
    assert "stalled" not in event_types(tracker, job.id)


def test_a_running_job_whose_heartbeat_is_stale_is_rescued_and_run_again(
    tracker: Tracker,
) -> None:
    attempts: list[int] = []

    @tracker.job("orphan", max_attempts=2)
    def orphan(ctx: Context) -> int:
        attempts.append(ctx.attempt)
        return ctx.attempt

    job = orphan.submit()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    force(
        tracker,
        job.id,
        status="running",
        attempt=1,
        lease="lost-lease",
        worker="ghost:1:jobtrail-0",
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
    )
    with worker(tracker, heartbeat_interval=0.1, heartbeat_timeout=1.0):
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.SUCCEEDED
    assert attempts == [2]
    assert done.attempt == 2
    rescued = [e for e in tracker.events(job.id) if e.type == "rescued"]
    assert len(rescued) == 1
    assert rescued[0].message == "heartbeat lost from ghost:1:jobtrail-0"


def test_a_lost_job_on_its_last_attempt_ends_failed_as_worker_lost(tracker: Tracker) -> None:
    ran: list[int] = []

    @tracker.job("orphan")
    def orphan(ctx: Context) -> None:
        ran.append(ctx.attempt)

    job = orphan.submit()
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    force(
        tracker,
        job.id,
        status="running",
        attempt=1,
        lease="lost-lease",
        started_at=an_hour_ago,
        heartbeat_at=an_hour_ago,
    )
    with worker(tracker, heartbeat_interval=0.1, heartbeat_timeout=1.0):
        done = tracker.wait(job.id, timeout=10)

    assert ran == []
    assert done.status is Status.FAILED
    assert done.error_message == "worker lost"
    assert done.completed_at is not None
    assert event_types(tracker, job.id)[-1] == "failed"


def test_a_fresh_heartbeat_keeps_a_quiet_job_from_being_rescued(tracker: Tracker) -> None:
    @tracker.job("quiet")
    def quiet(ctx: Context) -> int:
        time.sleep(1.0)  # no progress, longer than the heartbeat timeout
        return ctx.attempt

    job = quiet.submit()
    with worker(tracker, heartbeat_interval=0.1, heartbeat_timeout=0.5):
        done = tracker.wait(job.id, timeout=10)

    assert done.status is Status.SUCCEEDED
    assert done.result == 1
    assert "rescued" not in event_types(tracker, job.id)


def test_a_worker_that_consumes_nothing_runs_no_job_but_still_rescues_lost_ones(
    tracker: Tracker,
) -> None:
    ran: list[str] = []

    @tracker.job("noted")
    def noted(ctx: Context) -> None:
        ran.append(ctx.job_id)

    queued = noted.submit()
    lost = noted.submit()
    force(tracker, lost.id, status="running", lease="gone", attempt=0, max_attempts=2)
    force(tracker, lost.id, heartbeat_at=datetime.now(UTC) - timedelta(hours=1))
    with tracker.worker(1, consume=False, heartbeat_interval=0.05, heartbeat_timeout=1):
        until(lambda: tracker.get(lost.id).status is not Status.RUNNING, what="the rescue")
        assert tracker.workers() == []
    assert ran == []
    assert tracker.get(lost.id).status in (Status.QUEUED, Status.WAITING)
    assert tracker.get(queued.id).status is Status.WAITING


def test_a_job_submitted_to_an_idle_worker_in_this_process_starts_without_waiting_for_a_poll(
    tracker: Tracker,
) -> None:
    @tracker.job("ping")
    def ping(ctx: Context) -> str:
        return "pong"

    with tracker.worker(1, poll_interval=60):
        first = ping.submit()
        assert tracker.wait(first.id, timeout=30).status is Status.SUCCEEDED
        time.sleep(0.2)  # the worker has found nothing more and waits for its next poll
        second = ping.submit()
        # Woken by the submit's commit: a 60 s poll would time this out.
        assert tracker.wait(second.id, timeout=10).result == "pong"
