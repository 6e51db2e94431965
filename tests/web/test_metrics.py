"""Metrics in Prometheus text: the store's jobs, queue depths, rate-limiter waits, busiest kinds,
and what the shipped alerting rules watch (stalls, timeouts, parked jobs, schedules, rescues)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobtrail import Context, Tracker
from jobtrail.integrations.ratelimit import Limiter
from jobtrail.scheduler import Scheduler
from jobtrail.web import create_app
from tests.clock import FakeClock
from tests.rows import force
from tests.waiting import until
from tests.web.client import API, TESTCLIENT_WARNING, Api, later, open_client

pytestmark = TESTCLIENT_WARNING


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_report_the_stores_jobs_in_prometheus_text_format(api: Api) -> None:
    finished: list[str] = []
    for status in ("succeeded", "succeeded", "failed"):
        job_id = api.external(api.admin, kind="export")["id"]
        assert api.patch(job_id, api.admin, status=status).status_code == 200
        finished.append(job_id)
    api.external(api.admin, kind="export")
    for name in ("a", "b", "c"):
        submit = {"kind": "greet", "payload": {"name": name}}
        assert api.client.post(f"{API}/jobs", json=submit, headers=api.admin).status_code == 202
    future = {"kind": "greet", "payload": {"name": "later"}, "run_after": later()}
    assert api.client.post(f"{API}/jobs", json=future, headers=api.admin).status_code == 202

    response = api.client.get(f"{API}/metrics", headers=api.admin)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert value("jobtrail_jobs", kind="export", trigger="external", status="succeeded") == 2
    assert value("jobtrail_jobs", kind="export", trigger="external", status="failed") == 1
    assert value("jobtrail_jobs", kind="export", trigger="external", status="running") == 1
    assert value("jobtrail_jobs", kind="greet", trigger="api", status="queued") == 4
    assert value("jobtrail_jobs_finished_total", kind="export", status="succeeded") == 2
    assert value("jobtrail_jobs_finished_total", kind="export", status="failed") == 1
    assert ("jobtrail_jobs_finished_total", frozenset({("kind", "greet")})) not in samples
    assert value("jobtrail_jobs_created_total", kind="greet") == 4
    assert value("jobtrail_queue_depth", queue="default") == 3
    assert value("jobtrail_job_duration_seconds_bucket", kind="export", le="+Inf") == 3
    assert value("jobtrail_job_duration_seconds_count", kind="export") == 3
    durations = sum(api.job(job_id)["duration_seconds"] for job_id in finished)
    assert value("jobtrail_job_duration_seconds_sum", kind="export") == pytest.approx(durations)
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in samples.items()
        if name == "jobtrail_job_duration_seconds_bucket" and dict(labels)["kind"] == "export"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert value("jobtrail_active_jobs", status="queued") == 4
    assert value("jobtrail_active_jobs", status="running") == 1


def test_metrics_give_an_empty_queue_a_zero_sample(api: Api) -> None:
    with api.tracker.worker(1, queues=["gpu"], heartbeat_interval=0.05):
        until(lambda: api.tracker.workers(), 5, what="the worker to announce itself")
        samples = _samples(api.client.get(f"{API}/metrics", headers=api.admin).text)
    for queue in ("default", "gpu"):
        assert samples[("jobtrail_queue_depth", frozenset({("queue", queue)}))] == 0
        labels = frozenset({("queue", queue)})
        assert samples[("jobtrail_oldest_queued_age_seconds", labels)] == 0


def _scrape(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = api.client.get(f"{API}/metrics", headers=api.admin)
    assert response.status_code == 200
    return _samples(response.text)


def _by(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> dict[str, float]:
    """The samples of the one-label metric ``name`` by that label's value."""
    return {next(iter(labels))[1]: value for (n, labels), value in samples.items() if n == name}


def test_metrics_report_stalled_and_overdue_jobs_per_kind_and_jobs_no_worker_consumes(
    database_url: str,
) -> None:
    release = threading.Event()
    with (
        Tracker(database_url, poll_interval=0.02, flush_interval=0.02) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):

        @tracker.job("stuck", stall_after=0.3, timeout=0.2)
        def stuck(ctx: Context) -> None:
            release.wait(20)  # never checks in: the timeout cannot stop it

        @tracker.job("calm")
        def calm(ctx: Context) -> None:
            release.wait(20)

        @tracker.job("render", queue="gpu")
        def render(ctx: Context) -> None: ...

        api = Api.with_tokens(tracker, client)
        try:
            with tracker.worker(2, queues=["default"], heartbeat_interval=0.05):
                stuck_job, calm_job, parked = stuck.submit(), calm.submit(), render.submit()
                until(lambda: tracker.get(stuck_job.id).stalled, 10, what="the stall flag")
                until(lambda: tracker.get(calm_job.id).status == "running", 10, what="calm")
                until(lambda: tracker.get(parked.id).status == "waiting", 10, what="parking")
                samples = _scrape(api)
        finally:
            release.set()
    assert _by(samples, "jobtrail_stalled_jobs") == {"stuck": 1, "calm": 0}
    assert _by(samples, "jobtrail_overdue_jobs") == {"stuck": 1, "calm": 0}
    assert _by(samples, "jobtrail_unconsumed_jobs") == {"default": 0, "gpu": 1}
    assert _by(samples, "jobtrail_queue_depth") == {"default": 0, "gpu": 0}
    waits = _by(samples, "jobtrail_oldest_unconsumed_age_seconds")
    assert waits["default"] == 0
    assert 0 < waits["gpu"] < 30


def test_metrics_report_how_long_a_schedules_due_slot_has_gone_without_its_job_starting(
    database_url: str,
) -> None:
    clock = FakeClock()  # 12:00:00
    with (
        Tracker(database_url, clock=clock, poll_interval=0.01) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):

        @tracker.job("beat")
        def beat(ctx: Context) -> None: ...

        tracker.schedule("minutely", "beat", every=60)
        tracker.schedule("hourly", "beat", every=3600)
        api = Api.with_tokens(tracker, client)
        scheduler = Scheduler.of(tracker.runtime, "ticker")
        scheduler.register()
        assert _by(_scrape(api), "jobtrail_schedule_late_seconds") == {"hourly": 0, "minutely": 0}
        clock.advance(60)
        scheduler.tick()  # the 12:01 slot's job is created, not started
        clock.advance(30)
        assert _by(_scrape(api), "jobtrail_schedule_late_seconds")["minutely"] == 30
        clock.advance(60)  # 12:02:30: the 12:02 slot is due and no one ticks
        late = _by(_scrape(api), "jobtrail_schedule_late_seconds")
        assert late == {"hourly": 0, "minutely": 90}
        scheduler.tick()
        assert _by(_scrape(api), "jobtrail_schedule_late_seconds")["minutely"] == 30
        tracker.worker(1).run(burst=True)
        late = _by(_scrape(api), "jobtrail_schedule_late_seconds")
    assert late == {"hourly": 0, "minutely": 0}


def test_metrics_name_the_latest_schedules_and_fold_the_rest_into_other_at_their_latest(
    database_url: str,
) -> None:
    clock = FakeClock()  # 12:00:00
    with (
        Tracker(database_url, clock=clock, metrics_max_kinds=1) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):

        @tracker.job("beat")
        def beat(ctx: Context) -> None: ...

        for name, every in [("minutely", 60), ("two_minutely", 120), ("hourly", 3600)]:
            tracker.schedule(name, "beat", every=every)
        Scheduler.of(tracker.runtime, "ticker").register()
        clock.advance(150)  # no one ticks: due since 12:01, 12:02 and 13:00
        late = _by(_scrape(Api.with_tokens(tracker, client)), "jobtrail_schedule_late_seconds")
    assert late == {"minutely": 90, "other": 30}


def test_metrics_report_when_a_lost_workers_job_was_last_rescued(database_url: str) -> None:
    clock = FakeClock()
    with (
        Tracker(database_url, clock=clock) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):

        @tracker.job("orphan", max_attempts=2)
        def orphan(ctx: Context) -> None: ...

        api = Api.with_tokens(tracker, client)
        before = _scrape(api)
        an_hour_ago = clock.now - timedelta(hours=1)
        lost: dict[str, Any] = {"status": "running", "lease": "lost", "heartbeat_at": an_hour_ago}
        first, last = orphan.submit(), orphan.submit()
        force(tracker, first.id, attempt=1, **lost)
        clock.advance(5)
        assert [j.status for j in tracker.store.expiry.rescue(60)] == ["queued"]
        rescued_at = clock.now
        requeued = _scrape(api)
        force(tracker, last.id, attempt=2, **lost)
        clock.advance(5)
        assert [j.status for j in tracker.store.expiry.rescue(60)] == ["failed"]
        failed = _scrape(api)
    none: frozenset[tuple[str, str]] = frozenset()
    last_rescue, rescues = (
        ("jobtrail_last_rescue_timestamp_seconds", none),
        ("jobtrail_rescues_total", none),
    )
    assert (before[last_rescue], before[rescues]) == (0, 0)
    assert (requeued[last_rescue], requeued[rescues]) == (rescued_at.timestamp(), 1)
    # A job lost on its last attempt fails ("worker lost"): a failure, not a rescue.
    assert (failed[last_rescue], failed[rescues]) == (rescued_at.timestamp(), 1)
    finished = (
        "jobtrail_jobs_finished_total",
        frozenset({("kind", "orphan"), ("status", "failed")}),
    )
    assert failed[finished] == 1


def test_metrics_report_the_rate_limiter_waits_of_the_serving_process(api: Api) -> None:
    limiter = Limiter(f"upstream-{uuid.uuid4().hex[:8]}", "1/second")
    waited = [limiter.acquire() for _ in range(2)]
    assert waited[0] == 0.0
    assert waited[1] > 0

    samples = _samples(api.client.get(f"{API}/metrics", headers=api.admin).text)

    labels = frozenset({("limiter", limiter.name)})
    assert samples[("jobtrail_ratelimit_waits_total", labels)] == 1
    seconds = samples[("jobtrail_ratelimit_wait_seconds_total", labels)]
    assert seconds > 0
    assert seconds == pytest.approx(waited[1], abs=0.01)


def test_metrics_name_the_busiest_kinds_and_fold_the_rest_into_other(
    database_url: str,
) -> None:
    with (
        Tracker(database_url, metrics_max_kinds=2) as tracker,
        open_client(create_app(tracker, run_worker=False)) as client,
    ):
        api = Api.with_tokens(tracker, client)
        for kind, count in [("big", 3), ("mid", 2), ("t1", 1), ("t2", 1), ("t3", 1)]:
            for _ in range(count):
                api.external(api.admin, kind=kind, trigger=f"trigger-{kind}")
        samples = _samples(client.get(f"{API}/metrics", headers=api.admin).text)
    created = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "jobtrail_jobs_created_total"
    }
    assert created == {"big": 3, "mid": 2, "other": 3}
    current = {
        (dict(labels)["kind"], dict(labels)["trigger"]): value
        for (name, labels), value in samples.items()
        if name == "jobtrail_jobs"
    }
    assert current == {
        ("big", "trigger-big"): 3,
        ("mid", "trigger-mid"): 2,
        ("other", "other"): 3,
    }
    assert samples[("jobtrail_open_streams", frozenset())] == 0
