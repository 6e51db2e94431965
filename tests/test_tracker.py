"""Tracker: registering kinds, submitting jobs, tracking work in place, cancelling and waiting."""

from __future__ import annotations

import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobtrail import (
    Context,
    IllegalTransition,
    JobHandle,
    JobNotFound,
    JobTimeout,
    PayloadError,
    Priority,
    Status,
    Tracker,
    UnknownKind,
)
from jobtrail.exceptions import InvalidData, InvalidOwner, ReportRefused
from jobtrail.jobs import NewJob


@pytest.fixture
def sync(tracker: Tracker) -> JobHandle[dict[str, str]]:
    """A registered kind, ``listing_sync(account_id, full=False)``."""

    @tracker.job("listing_sync", max_attempts=3, timeout=600)
    def listing_sync(ctx: Context, account_id: str, full: bool = False) -> dict[str, str]:
        return {"account": account_id}

    return listing_sync


def nothing_stored(tracker: Tracker) -> bool:
    return tracker.list().total_count == 0


# -- submitting --------------------------------------------------------------------------


def test_submit_queues_a_job_and_returns_at_once(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    job = sync.submit(account_id="A1", owner="A1", trigger="manual")

    assert job.status is Status.QUEUED
    assert (job.kind, job.owner, job.trigger, job.queue) == (
        "listing_sync",
        "A1",
        "manual",
        "default",
    )
    assert job.payload == {"account_id": "A1"}
    assert (job.attempt, job.max_attempts, job.timeout) == (0, 3, 600)
    assert job.priority is Priority.NORMAL
    assert job.started_at is None
    assert tracker.get(job.id) == job
    assert [e.type for e in tracker.events(job.id)] == ["created"]


def test_submit_takes_its_reserved_options_apart_from_the_payload(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    later = datetime(2030, 1, 1, tzinfo=UTC)
    job = sync.submit(
        account_id="A1",
        full=True,
        owner="u1",
        key="k-1",
        priority="urgent",
        trigger="api",
        run_after=later,
        labels={"team": "growth"},
    )
    stored = tracker.get(job.id)
    assert stored.payload == {"account_id": "A1", "full": True}
    assert (stored.owner, stored.key, stored.trigger) == ("u1", "k-1", "api")
    assert stored.priority is Priority.URGENT
    assert stored.run_after == later
    assert stored.labels == {"team": "growth"}


def test_a_handle_is_still_the_plain_function(sync: JobHandle[dict[str, str]]) -> None:
    assert sync(None, account_id="A9") == {"account": "A9"}
    assert sync.__name__ == "listing_sync"


def test_submitting_an_unknown_kind_raises_and_stores_nothing(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    with pytest.raises(UnknownKind, match="listing_sync") as raised:
        tracker.submit("nope", {})
    assert raised.value.kind == "nope"
    with pytest.raises(UnknownKind):
        tracker.submit_many("nope", [{}])
    assert nothing_stored(tracker)


def test_submitting_without_any_registered_kind_says_how_to_register_them(
    tracker: Tracker,
) -> None:
    with pytest.raises(UnknownKind, match="no kinds are registered in this process") as raised:
        tracker.submit("sync", {})
    assert "--app module:tracker" in str(raised.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({}, "account_id"),
        ({"account_id": "A1", "region": "eu"}, "region"),
        ({"account_id": datetime(2024, 1, 1, tzinfo=UTC)}, "JSON"),
        ({"account_id": {1, 2}}, "JSON"),
        ({"account_id": math.nan}, "JSON"),
    ],
    ids=["missing", "extra", "datetime", "set", "nan"],
)
def test_a_payload_that_does_not_fit_raises_payload_error_and_stores_nothing(
    tracker: Tracker, sync: JobHandle[dict[str, str]], payload: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PayloadError, match=reason) as raised:
        tracker.submit("listing_sync", payload)
    assert raised.value.kind == "listing_sync"
    with pytest.raises(PayloadError):
        sync.submit(**payload)
    assert nothing_stored(tracker)


def test_submit_many_validates_every_payload_before_storing_any(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    payloads: list[dict[str, Any]] = [{"account_id": "A1"}, {"account_id": "A2"}, {}]
    with pytest.raises(PayloadError):
        tracker.submit_many("listing_sync", payloads)
    assert nothing_stored(tracker)


def test_submitting_an_existing_key_returns_the_existing_job(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    first = sync.submit(account_id="A1", key="msg-1")
    again = sync.submit(account_id="A2", key="msg-1")
    other = sync.submit(account_id="A1", key="msg-2")

    assert again == first
    assert again.payload == {"account_id": "A1"}
    assert other.id != first.id
    assert tracker.list().total_count == 2
    assert [e.type for e in tracker.events(first.id)] == ["created"]


def test_concurrent_submits_of_the_same_keys_create_one_job_per_key(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    keys = [f"msg-{n}" for n in range(50)]
    threads = 8
    start = threading.Barrier(threads)

    def submit_all(seed: int) -> dict[str, str]:
        order = keys[:]
        random.Random(seed).shuffle(order)
        start.wait(timeout=10)
        return {key: sync.submit(account_id="A1", key=key).id for key in order}

    with ThreadPoolExecutor(threads) as pool:
        results = [f.result(timeout=60) for f in [pool.submit(submit_all, n) for n in range(8)]]

    assert all(result == results[0] for result in results)
    assert len(set(results[0].values())) == 50
    page = tracker.list(limit=1000)
    assert page.total_count == 50
    assert {j.key: j.id for j in page.jobs} == results[0]


def test_submit_many_stores_thousands_of_jobs_in_one_call(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    payloads = [{"account_id": f"A{n}"} for n in range(2000)]
    jobs = tracker.submit_many("listing_sync", payloads, owner="bulk", priority="low")

    assert [j.payload for j in jobs] == payloads
    assert len({j.id for j in jobs}) == 2000
    assert {j.status for j in jobs} == {Status.QUEUED}
    assert {j.priority for j in jobs} == {Priority.LOW}
    assert len({j.created_at for j in jobs}) == 1  # one transaction, one timestamp

    listed: set[str] = set()
    for offset in (0, 1000):
        page = tracker.list(owner="bulk", limit=1000, offset=offset)
        assert page.total_count == 2000
        listed.update(j.id for j in page.jobs)
    assert listed == {j.id for j in jobs}


def test_submit_many_of_nothing_stores_nothing(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    assert tracker.submit_many("listing_sync", []) == []
    assert nothing_stored(tracker)


def test_a_kind_needs_at_least_one_attempt(tracker: Tracker) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        tracker.job("k", max_attempts=0)


# -- tracking work in place --------------------------------------------------------------


def test_track_records_a_running_job_that_succeeds(tracker: Tracker) -> None:
    with tracker.track("import", owner="u1", trigger="api", payload={"file": "a.csv"}) as ctx:
        running = tracker.get(ctx.job_id)
        assert running.status is Status.RUNNING
        assert running.started_at is not None
        assert running.worker is not None
        assert running.attempt == 1
    job = tracker.get(ctx.job_id)
    assert job.status is Status.SUCCEEDED
    assert (job.owner, job.trigger, job.payload) == ("u1", "api", {"file": "a.csv"})
    assert job.progress == 100.0
    assert job.completed_at is not None
    assert job.duration_seconds is not None
    assert job.duration_seconds >= 0
    assert [e.type for e in tracker.events(job.id)] == ["created", "started", "succeeded"]


def test_an_exception_escaping_track_fails_the_job_and_is_reraised(tracker: Tracker) -> None:
    error = LookupError("listing 42 vanished upstream")

    job_ids: list[str] = []

    def fetch() -> None:
        raise error

    def handler() -> None:
        with tracker.track("import") as ctx:
            job_ids.append(ctx.job_id)
            ctx.progress(30, "Fetching")
            fetch()

    with pytest.raises(LookupError) as raised:
        handler()

    assert raised.value is error
    job = tracker.get(job_ids[0])
    assert job.status is Status.FAILED
    assert job.error_message == "LookupError: listing 42 vanished upstream"
    details = job.error_details
    assert details["type"] == "LookupError"
    assert "Traceback (most recent call last)" in details["traceback"]
    assert "in fetch" in details["traceback"]
    assert "LookupError: listing 42 vanished upstream" in details["traceback"]
    assert job.message == "Fetching"
    last = tracker.events(job.id)[-1]
    assert (last.type, last.message) == ("failed", job.error_message)


def test_track_with_a_total_reports_it_from_the_start(tracker: Tracker) -> None:
    with tracker.track("import", total=20) as ctx:
        assert tracker.get(ctx.job_id).items_total == 20


# -- cancelling, reading, waiting --------------------------------------------------------


def test_cancelling_a_queued_job_cancels_it_at_once(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    job = sync.submit(account_id="A1")
    cancelled = tracker.cancel(job.id, actor="admin")
    assert cancelled.status is Status.CANCELLED
    assert tracker.get(job.id).status is Status.CANCELLED
    assert [(e.type, e.actor) for e in tracker.events(job.id)] == [
        ("created", None),
        ("cancelled", "admin"),
    ]


def test_cancelling_a_finished_job_raises_illegal_transition(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        pass
    with pytest.raises(IllegalTransition) as raised:
        tracker.cancel(ctx.job_id)
    assert raised.value.current is Status.SUCCEEDED
    assert tracker.get(ctx.job_id).status is Status.SUCCEEDED


def test_cancelling_a_cancelled_job_raises_illegal_transition(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    job = tracker.cancel(sync.submit(account_id="A1").id)
    with pytest.raises(IllegalTransition):
        tracker.cancel(job.id)


def test_reading_or_cancelling_a_missing_job_raises_job_not_found(tracker: Tracker) -> None:
    with pytest.raises(JobNotFound, match="missing"):
        tracker.get("missing")
    with pytest.raises(JobNotFound):
        tracker.cancel("missing")


def test_wait_returns_a_finished_job(tracker: Tracker) -> None:
    with tracker.track("import") as ctx:
        pass
    assert tracker.wait(ctx.job_id, timeout=1).status is Status.SUCCEEDED


def test_wait_gives_up_on_a_job_that_does_not_finish(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    job = sync.submit(account_id="A1")
    with pytest.raises(JobTimeout) as raised:
        tracker.wait(job.id, timeout=0.1)
    assert raised.value.status is Status.QUEUED


def test_active_lists_only_unfinished_jobs_newest_first(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    queued = sync.submit(account_id="A1", run_after=datetime.now(UTC) + timedelta(hours=1))
    tracker.cancel(sync.submit(account_id="A2").id)
    with tracker.track("import") as ctx:
        assert {j.id for j in tracker.active()} == {queued.id, ctx.job_id}
    assert [j.id for j in tracker.active()] == [queued.id]


# -- settings ----------------------------------------------------------------------------


def test_an_explicit_argument_wins_over_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTRAIL_FLUSH_INTERVAL", "7.5")
    with Tracker(database_url) as from_env:
        assert from_env.settings.flush_interval == 7.5
        assert from_env.settings.database_url == database_url
    with Tracker(database_url, flush_interval=0.5) as explicit:
        assert explicit.settings.flush_interval == 0.5


# -- what the store can hold: one rule on both databases ---------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"account_id": math.nan},
        {"account_id": math.inf},
        {"account_id": float("1e400")},
        {"account_id": "A\x001"},
        {"account_id": "A\ud8001"},
    ],
    ids=["nan", "infinity", "1e400", "nul", "lone-surrogate"],
)
def test_a_payload_neither_database_stores_as_given_is_a_payload_error(
    tracker: Tracker, sync: JobHandle[dict[str, str]], payload: dict[str, Any]
) -> None:
    with pytest.raises(PayloadError, match="not storable JSON"):
        tracker.submit("listing_sync", payload)
    assert nothing_stored(tracker)


@pytest.mark.parametrize(
    "labels",
    [{"ratio": math.nan}, {"big": float("1e400")}, {"name": "a\x00b"}],
    ids=["nan", "1e400", "nul"],
)
def test_labels_neither_database_stores_are_refused_on_submit_and_add(
    tracker: Tracker, sync: JobHandle[dict[str, str]], labels: dict[str, Any]
) -> None:
    with pytest.raises(InvalidData, match="labels"):
        sync.submit(account_id="A1", labels=labels)
    with pytest.raises(InvalidData, match="labels"):
        tracker.add(NewJob("remote", labels=labels))
    assert nothing_stored(tracker)


def test_a_described_job_with_text_the_store_cannot_hold_is_refused(tracker: Tracker) -> None:
    for new in (NewJob("re\ud800mote"), NewJob("remote", message="a\x00b")):
        with pytest.raises(InvalidData):
            tracker.add(new)
    assert nothing_stored(tracker)


@pytest.mark.parametrize(
    "values",
    [
        {"progress": math.nan},
        {"progress": math.inf},
        {"result": {"score": float("1e400")}},
        {"progress_data": {"rate": -math.inf}},
        {"error_details": {"x": math.nan}},
        {"message": "a\x00b"},
        {"result": "lone \udcff"},
    ],
    ids=["nan", "infinity", "result-1e400", "data-inf", "details-nan", "nul", "surrogate"],
)
def test_a_report_the_store_cannot_hold_is_refused_and_changes_nothing(
    tracker: Tracker, values: dict[str, Any]
) -> None:
    job, _ = tracker.add(NewJob("remote", status=Status.RUNNING, message="started"))

    with pytest.raises(InvalidData):
        tracker.report(job.id, values, Status.SUCCEEDED)

    after = tracker.get(job.id)
    assert after.status is Status.RUNNING
    assert after.message == "started"
    assert after.result is None


def test_reported_item_counts_may_not_add_up_past_the_total(tracker: Tracker) -> None:
    job, _ = tracker.add(NewJob("remote", status=Status.RUNNING, items_total=10))
    tracker.report(job.id, {"items_succeeded": 6})

    with pytest.raises(InvalidData, match=r"items_succeeded \+ items_failed \(6 \+ 5\)"):
        tracker.report(job.id, {"items_failed": 5})
    with pytest.raises(InvalidData, match="exceeds items_total"):
        tracker.report(job.id, {"items_succeeded": 11, "items_failed": 0})
    with pytest.raises(InvalidData, match=r"exceeds items_total \(5\)"):
        tracker.report(job.id, {"items_total": 5})

    after = tracker.report(job.id, {"items_failed": 4})
    assert (after.items_succeeded, after.items_failed, after.items_done) == (6, 4, 10)
    assert after.progress == 100.0


# -- who may report -----------------------------------------------------------------------------


def test_a_job_jobtrail_runs_itself_takes_no_report(
    tracker: Tracker, sync: JobHandle[dict[str, str]]
) -> None:
    queued = sync.submit(account_id="A1")
    with (
        tracker.track("inline") as ctx,
        pytest.raises(ReportRefused, match="jobtrail runs it") as refused,
    ):
        tracker.report(ctx.job_id, {"result": "forged"}, Status.SUCCEEDED)
    assert isinstance(refused.value, IllegalTransition)
    with pytest.raises(ReportRefused):
        tracker.report(queued.id, {"message": "forged"}, Status.CANCELLED)

    assert tracker.get(ctx.job_id).status is Status.SUCCEEDED
    assert tracker.get(ctx.job_id).result is None
    assert tracker.get(queued.id).status is Status.QUEUED
    assert tracker.get(queued.id).message is None


def test_an_external_job_takes_no_report_while_a_runner_holds_it(tracker: Tracker) -> None:
    from jobtrail.runner import Runner

    job, _ = tracker.add(NewJob("celery_task"))
    assert job.external
    run = Runner.of(tracker.runtime).take_over(job.id)
    assert run is not None

    with pytest.raises(ReportRefused, match="a runner holds it"):
        tracker.report(job.id, {"result": "forged"}, Status.SUCCEEDED)
    Runner.of(tracker.runtime).succeed(run.buffer, "real")

    done = tracker.get(job.id)
    assert (done.status, done.result) == (Status.SUCCEEDED, "real")


def test_an_external_job_takes_reports_until_it_ends(tracker: Tracker) -> None:
    job, _ = tracker.add(NewJob("remote"))

    running = tracker.report(job.id, {"message": "picked up"}, Status.RUNNING)
    done = tracker.report(job.id, {"result": {"rows": 3}}, Status.SUCCEEDED)

    assert running.status is Status.RUNNING
    assert (done.status, done.result, done.external) == (Status.SUCCEEDED, {"rows": 3}, True)
    with pytest.raises(IllegalTransition):
        tracker.report(job.id, {"result": "again"}, Status.FAILED)


def test_a_report_without_a_percentage_keeps_the_jobs(tracker: Tracker) -> None:
    job, _ = tracker.add(NewJob("remote", status=Status.RUNNING))
    tracker.report(job.id, {"progress": 40.0})

    reported = tracker.report(job.id, {"progress": None, "message": "still going"})

    assert (reported.progress, reported.message) == (40.0, "still going")


# -- tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("owner", ["", " ", "\t\n"])
def test_a_token_for_an_empty_owner_is_refused(tracker: Tracker, owner: str) -> None:
    with pytest.raises(InvalidOwner, match="must not be empty") as refused:
        tracker.ops.create_token("blank", owner)

    assert isinstance(refused.value, ValueError)
    assert tracker.ops.tokens() == []
    assert tracker.ops.create_token("admin", None).startswith("jt_")
    assert tracker.ops.create_token("someone", "A").startswith("jt_")
