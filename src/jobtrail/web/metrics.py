"""Prometheus metrics: the store's figures read at scrape time (so they are right across
processes), with their names folded to a bounded set, and this process's open streams and
rate-limiter waits."""

# No ``from __future__ import annotations``: the endpoint's annotations name its router's
# caller dependency (a local alias), which FastAPI can only read evaluated.

import importlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeAlias, TypeVar

from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from jobtrail.exceptions import NotAllowed
from jobtrail.jobs import DURATION_BUCKETS
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal
from jobtrail.web.open_streams import OpenStreams

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
"""The label value that stands for every kind, trigger or queue past the busiest ones."""
Family = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily
K = TypeVar("K")


@dataclass(frozen=True)
class QueueMetrics:
    """The names and help of a per-queue count and the age of its oldest job."""

    count: str
    count_help: str
    age: str
    age_help: str


QUEUED = QueueMetrics(
    "jobtrail_queue_depth",
    "Jobs due to run",
    "jobtrail_oldest_queued_age_seconds",
    "Wait of the oldest due job",
)
UNCONSUMED = QueueMetrics(
    "jobtrail_unconsumed_jobs",
    "Jobs waiting on a queue no live worker consumes",
    "jobtrail_oldest_unconsumed_age_seconds",
    "Wait of the oldest of them since it was due",
)


class Fold:
    """Keeps the ``cap`` busiest names of a label; any other name is reported as ``other``,
    so a tenant inventing kinds cannot grow the metrics without bound."""

    def __init__(self, counts: Mapping[str, float], cap: int) -> None:
        self.kept = set(sorted(counts, key=lambda name: (-counts[name], name))[:cap])

    def __call__(self, name: str) -> str:
        return name if name in self.kept else OTHER


class StoreCollector(Collector):
    """Reads one snapshot of the store per scrape and reports it as ``jobtrail_*`` metrics,
    with the open streams and rate-limiter waits of this process."""

    def __init__(self, tracker: Tracker, streams: OpenStreams, cap: int) -> None:
        self.tracker = tracker
        self.streams = streams
        self.cap = cap

    def collect(self) -> Iterator[Family]:
        shot = self.tracker.ops.gauges()
        kinds: Counter[str] = Counter(shot.created)
        triggers: Counter[str] = Counter()
        for (k, t, _), n in shot.jobs.items():
            kinds[k] += n
            triggers[t] += n
        kind, trigger = Fold(kinds, self.cap), Fold(triggers, self.cap)
        yield from _jobs(
            _fold(shot.jobs, lambda j: (kind(j[0]), trigger(j[1]), j[2])),
            _fold(shot.created, kind),
            _fold(shot.finished, lambda f: (kind(f[0]), f[1])),
        )
        yield _durations(_fold_durations(shot.durations, kind))
        yield _active(shot.jobs)
        depth, parked, queue = self._queues(shot.queue_depth, shot.unconsumed)
        yield from _per_queue(depth, shot.oldest_queued, queue, QUEUED)
        yield from _per_queue(parked, shot.oldest_unconsumed, queue, UNCONSUMED)
        yield from _items(_fold_items(shot.items, kind))
        yield from _running(shot.jobs, shot.stalled, shot.overdue, kind)
        yield _schedules(shot.schedule_late, Fold(shot.schedule_late, self.cap))
        yield from _rescues(shot.rescues, shot.last_rescue_at)
        yield GaugeMetricFamily(
            "jobtrail_open_streams",
            "SSE and WebSocket streams open in this process",
            self.streams.total,
        )
        yield from _limiter_waits(self.tracker.settings.ratelimit_storage_url)

    def _queues(
        self, depth: dict[str, int], parked: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, int], Fold]:
        """Both counts per queue over the same names (0 where a queue has none of them), and
        the busiest queues of both together."""
        names = {*self._known_queues(), *depth, *parked}
        depth, parked = dict.fromkeys(names, 0) | depth, dict.fromkeys(names, 0) | parked
        return depth, parked, Fold({n: depth[n] + parked[n] for n in names}, self.cap)

    def _known_queues(self) -> set[str]:
        """Queues that get a sample even when empty (0, so an alert on them reads 0, not "no
        data"): ``default`` and every queue a live worker names."""
        named = (w.queues or () for w in self.tracker.workers())
        return {"default", *(queue for queues in named for queue in queues)}


def _fold(counts: Mapping[K, int], key: Callable[[K], K]) -> dict[K, int]:
    """``counts`` summed under the keys ``key`` maps theirs to."""
    total: Counter[K] = Counter()
    for name, n in counts.items():
        total[key(name)] += n
    return dict(total)


def _fold_durations(
    durations: Mapping[str, tuple[list[int], float]], kind: Fold
) -> dict[str, tuple[list[int], float]]:
    folded: dict[str, tuple[list[int], float]] = {}
    for name, (buckets, seconds) in durations.items():
        before, total = folded.get(kind(name), ([0] * len(buckets), 0.0))
        folded[kind(name)] = (
            [a + b for a, b in zip(before, buckets, strict=True)],
            total + seconds,
        )
    return folded


def _fold_items(items: Mapping[str, tuple[int, int]], kind: Fold) -> dict[str, tuple[int, int]]:
    folded: dict[str, tuple[int, int]] = {}
    for name, (done, failed) in items.items():
        was_done, was_failed = folded.get(kind(name), (0, 0))
        folded[kind(name)] = (was_done + done, was_failed + failed)
    return folded


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


def _per_queue(
    counts: dict[str, int], oldest: dict[str, float], queue: Fold, names: QueueMetrics
) -> Iterator[GaugeMetricFamily]:
    """A count per queue and the wait of each queue's oldest job, named by ``names``."""
    jobs = GaugeMetricFamily(names.count, names.count_help, labels=["queue"])
    age = GaugeMetricFamily(names.age, names.age_help, labels=["queue"])
    waits = _fold_max(oldest, queue)
    for name, n in sorted(_fold(counts, queue).items()):
        jobs.add_metric([name], n)
        age.add_metric([name], waits.get(name, 0.0))
    yield jobs
    yield age


def _running(
    jobs: dict[tuple[str, str, str], int],
    stalled: dict[str, int],
    overdue: dict[str, int],
    kind: Fold,
) -> Iterator[GaugeMetricFamily]:
    """Running jobs flagged stalled, and past their timeout, per kind (0 for every kind with
    running jobs, so an alert on a kind reads 0 rather than "no data")."""
    running = {k: 0 for (k, _, status) in jobs if status == "running"}
    for name, help_text, counts in (
        ("jobtrail_stalled_jobs", "Running jobs flagged stalled", stalled),
        ("jobtrail_overdue_jobs", "Running jobs past their timeout", overdue),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["kind"])
        for label, n in sorted(_fold(running | counts, kind).items()):
            family.add_metric([label], n)
        yield family


def _schedules(late: dict[str, float], schedule: Fold) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "jobtrail_schedule_late_seconds",
        "How long the schedule's due slot has gone without its job starting (0: on time)",
        labels=["schedule"],
    )
    for name, seconds in sorted(_fold_max(late, schedule).items()):
        family.add_metric([name], seconds)
    return family


def _rescues(count: int, last_at: datetime | None) -> Iterator[Family]:
    yield CounterMetricFamily("jobtrail_rescues", "Jobs rescued from lost workers", count)
    yield GaugeMetricFamily(
        "jobtrail_last_rescue_timestamp_seconds",
        "When a lost worker's job was last rescued (0: never)",
        0.0 if last_at is None else last_at.timestamp(),
    )


def _fold_max(seconds: Mapping[str, float], key: Fold) -> dict[str, float]:
    """The largest of ``seconds`` under each folded name."""
    folded: dict[str, float] = {}
    for name, value in seconds.items():
        folded[key(name)] = max(folded.get(key(name), 0.0), value)
    return folded


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


def _limiter_waits(storage_url: str) -> Iterator[CounterMetricFamily]:
    """Rate-limiter waits: those every process counted in the limiters' shared storage (a
    Redis ``storage_url``), and this process's in-memory ones when job code here uses the
    limiters (serving needs no ratelimit extra unless the storage is shared)."""
    shared = not storage_url.startswith("memory:")
    module = sys.modules.get("jobtrail.integrations.ratelimit")
    if module is None and shared:
        module = importlib.import_module("jobtrail.integrations.ratelimit")
    if module is None:
        return
    waits = CounterMetricFamily(
        "jobtrail_ratelimit_waits", "Acquisitions that had to wait", labels=["limiter"]
    )
    seconds = CounterMetricFamily(
        "jobtrail_ratelimit_wait_seconds", "Seconds spent waiting", labels=["limiter"]
    )
    for name, stats in sorted(module.wait_stats(storage_url if shared else None).items()):
        waits.add_metric([name], stats.waits)
        seconds.add_metric([name], stats.seconds)
    yield waits
    yield seconds


def add_metrics_route(
    router: APIRouter, tracker: Tracker, gate: Gate, streams: OpenStreams
) -> None:
    """Add ``GET /metrics`` (Prometheus text format): for admin tokens, or for anyone when
    the ``metrics_public`` setting is on (a scraper on a private network)."""
    settings = tracker.settings
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(tracker, streams, settings.metrics_max_kinds))
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    documented: dict[int | str, dict[str, Any]] = {
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus metrics"}
    }

    def scrape() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    if settings.metrics_public:

        @router.get("/metrics", response_class=Response, responses=documented, tags=["service"])
        def public_metrics() -> Response:
            """Every ``jobtrail_*`` metric, computed from the store at scrape time."""
            return scrape()

        return

    @router.get("/metrics", response_class=Response, responses=documented, tags=["service"])
    def metrics(caller: Caller) -> Response:
        """Every ``jobtrail_*`` metric, computed from the store at scrape time; they name
        every owner's kinds, so only an admin token may read them (others: 403)."""
        if not caller.admin:
            raise NotAllowed("metrics need an admin token")
        return scrape()
