"""Prometheus metrics: the store's figures read at scrape time (so they are right across
processes), and this process's rate-limiter waits."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobtrail.jobs import DURATION_BUCKETS
from jobtrail.tracker import Tracker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


class StoreCollector(Collector):
    """Reads one snapshot of the store per scrape and reports it as ``jobtrail_*`` metrics,
    with the rate-limiter waits of this process."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[Family]:
        shot = self.tracker.gauges()
        yield from _jobs(shot.jobs, shot.created, shot.finished)
        yield _durations(shot.durations)
        yield _active(shot.jobs)
        yield from _queues(shot.queue_depth, shot.oldest_queued)
        yield from _items(shot.items)
        yield CounterMetricFamily(
            "jobtrail_rescues", "Jobs rescued from lost workers", shot.rescues
        )
        yield GaugeMetricFamily(
            "jobtrail_stalled_jobs", "Running jobs flagged stalled", shot.stalled
        )
        yield from _limiter_waits()


def _jobs(
    jobs: dict[tuple[str, str, str], int],
    created: dict[str, int],
    finished: dict[tuple[str, str], int],
) -> Iterator[Family]:
    current = GaugeMetricFamily(
        "jobtrail_jobs", "Jobs in the store", labels=["kind", "trigger", "status"]
    )
    for (kind, trigger, status), n in sorted(jobs.items()):
        current.add_metric([kind, trigger, status], n)
    yield current
    made = CounterMetricFamily("jobtrail_jobs_created", "Jobs created", labels=["kind"])
    for kind, n in sorted(created.items()):
        made.add_metric([kind], n)
    yield made
    ended = CounterMetricFamily(
        "jobtrail_jobs_finished", "Jobs finished", labels=["kind", "status"]
    )
    for (kind, status), n in sorted(finished.items()):
        ended.add_metric([kind, status], n)
    yield ended


def _durations(durations: dict[str, tuple[list[int], float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "jobtrail_job_duration_seconds", "Run time of finished jobs", labels=["kind"]
    )
    for kind, (buckets, total) in sorted(durations.items()):
        cumulative, running = [], 0
        for bound, n in zip([*map(str, DURATION_BUCKETS), "+Inf"], buckets, strict=True):
            running += n
            cumulative.append((bound, running))
        family.add_metric([kind], cumulative, total)
    return family


def _active(jobs: dict[tuple[str, str, str], int]) -> GaugeMetricFamily:
    active = GaugeMetricFamily("jobtrail_active_jobs", "Jobs not finished", labels=["status"])
    for status in ("queued", "waiting", "running"):
        active.add_metric([status], sum(n for (_, _, s), n in jobs.items() if s == status))
    return active


def _queues(depth: dict[str, int], oldest: dict[str, float]) -> Iterator[GaugeMetricFamily]:
    queued = GaugeMetricFamily("jobtrail_queue_depth", "Jobs due to run", labels=["queue"])
    age = GaugeMetricFamily(
        "jobtrail_oldest_queued_age_seconds", "Wait of the oldest due job", labels=["queue"]
    )
    for queue in sorted(depth):
        queued.add_metric([queue], depth[queue])
        age.add_metric([queue], oldest[queue])
    yield queued
    yield age


def _items(items: dict[str, tuple[int, int]]) -> Iterator[CounterMetricFamily]:
    processed = CounterMetricFamily(
        "jobtrail_items_processed", "Items processed by live jobs", labels=["kind"]
    )
    failed = CounterMetricFamily(
        "jobtrail_items_failed", "Items failed by live jobs", labels=["kind"]
    )
    for kind, (done, bad) in sorted(items.items()):
        processed.add_metric([kind], done)
        failed.add_metric([kind], bad)
    yield processed
    yield failed


def _limiter_waits() -> Iterator[CounterMetricFamily]:
    """This process's rate-limiter waits, when job code here uses the limiters at all (the
    module is not imported for it: serving needs no ratelimit extra)."""
    module = sys.modules.get("jobtrail.integrations.ratelimit")
    if module is None:
        return
    waits = CounterMetricFamily(
        "jobtrail_ratelimit_waits", "Acquisitions that had to wait", labels=["limiter"]
    )
    seconds = CounterMetricFamily(
        "jobtrail_ratelimit_wait_seconds", "Seconds spent waiting", labels=["limiter"]
    )
    for name, stats in sorted(module.wait_stats().items()):
        waits.add_metric([name], stats.waits)
        seconds.add_metric([name], stats.seconds)
    yield waits
    yield seconds


def add_metrics_route(router: APIRouter, tracker: Tracker) -> None:
    """Add ``GET /metrics`` (Prometheus text format; no token, like most exporters)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(tracker))

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus metrics"}},
        tags=["service"],
    )
    def metrics() -> Response:
        """Every ``jobtrail_*`` metric, computed from the store at scrape time."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)
