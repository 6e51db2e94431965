"""Metrics in Prometheus text: the store's jobs, queue depths, rate-limiter waits, busiest kinds."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobtrail import Tracker
from jobtrail.integrations.ratelimit import Limiter
from jobtrail.web import create_app
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
