"""Celery with and without jobtrail tracking, measured as issue 14 does: no-op tasks published
one call at a time from one client to a ``celery worker --pool prefork --concurrency 2``
process over a Redis broker, jobtrail on SQLite and on PostgreSQL; plain and tracked rounds
interleaved in one run, medians reported.

Both workers run side by side on their own queues (each idle while the other is measured).
A tracked round ends only when every task has run *and* its jobtrail record says
``succeeded``, so deferring writes cannot hide their cost. Idle pickup is one task at a time
to an idle worker, from publish to the task having run (and, tracked, to its record ending).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from celery import Celery

import jobtrail
from bench.servers import ROOT, database
from jobtrail.integrations.celery import tracking_of

BROKER_ENV = "JOBTRAIL_BENCH_BROKER"
TRACKED_ENV = "JOBTRAIL_BENCH_TRACKED"
DONE = "bench:done"
TASKS = {False: "plain_noop", True: "tracked_noop"}
QUEUES = {False: "plain", True: "tracked"}


def make_app(broker: str, tracked: bool, tracker: jobtrail.Tracker | None = None) -> Celery:
    """The bench app: one no-op task on its own queue, mirrored into ``tracker`` if tracked."""
    from jobtrail.integrations.celery import TrackedTask, install

    app = Celery(f"bench_{QUEUES[tracked]}", broker=broker)
    app.conf.update(
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUES[tracked],
    )
    done = redis.Redis.from_url(broker)
    if tracked:
        install(app, tracker or jobtrail.Tracker())

    def noop() -> None:
        done.rpush(DONE, b"")  # the same one round trip for both: how the client sees it ran

    options: dict[str, Any] = {"base": TrackedTask} if tracked else {}
    app.task(name=TASKS[tracked], **options)(noop)
    return app


def _worker_app() -> Celery | None:
    """The app a ``celery -A bench.celery_overhead worker`` process runs (from its env)."""
    broker = os.environ.get(BROKER_ENV)
    if not broker:
        return None
    # Both sides log at WARNING: Celery's per-task lines are off, and so are jobtrail's.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return make_app(broker, os.environ.get(TRACKED_ENV) == "1")


app = _worker_app()


@contextmanager
def celery_worker(broker: str, database_url: str, tracked: bool) -> Iterator[None]:
    """A prefork ×2 worker process for one side, stopped (warm shutdown) on exit."""
    env = os.environ | {
        BROKER_ENV: broker,
        TRACKED_ENV: "1" if tracked else "0",
        "JOBTRAIL_DATABASE_URL": database_url,
    }
    command = [str(ROOT / ".venv" / "bin" / "celery"), "-A", "bench.celery_overhead", "worker"]
    command += ["--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    command += ["-Q", QUEUES[tracked], "-n", f"{QUEUES[tracked]}@bench"]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


@dataclass
class Side:
    """One side of the comparison: its publishing app and how to tell its work is recorded."""

    app: Celery
    tracked: bool
    done: redis.Redis
    recorded: Callable[[], int] = lambda: 0
    e2e: list[float] = field(default_factory=list)
    publish: list[float] = field(default_factory=list)
    pickup: list[float] = field(default_factory=list)
    pickup_recorded: list[float] = field(default_factory=list)

    def send(self) -> str:
        return str(self.app.send_task(TASKS[self.tracked]).id)

    def warm(self, tasks: int = 20) -> None:
        """Wait for the worker, and let both children open their connections."""
        self.done.delete(DONE)
        for _ in range(tasks):
            self.send()
        _wait_for(lambda: int(self.done.llen(DONE)) >= tasks, 60, "the worker to start")
        self.done.delete(DONE)

    def round(self, tasks: int, expected_recorded: int) -> None:
        """Publish ``tasks`` tasks one call at a time; time until all ran (and are recorded)."""
        self.done.delete(DONE)
        started = time.perf_counter()
        for _ in range(tasks):
            self.send()
        published = time.perf_counter()
        _wait_for(lambda: int(self.done.llen(DONE)) >= tasks, 600, "the tasks to run")
        _wait_for(lambda: self.recorded() >= expected_recorded, 120, "the records to end")
        flush = getattr(tracking_of(self.app), "flush", None) if self.tracked else None
        if flush is not None:  # the publisher's queued writes are part of the cost
            flush()  # (before batching they were written at publish: no flush)
        ended = time.perf_counter()
        self.publish.append(tasks / (published - started))
        self.e2e.append(tasks / (ended - started))

    def idle_pickups(self, samples: int, tracker: jobtrail.Tracker) -> None:
        """Publish to an idle worker, one at a time: latency to run (and to be recorded)."""
        for _ in range(samples):
            self.done.delete(DONE)
            time.sleep(0.05)  # the worker goes idle
            started = time.perf_counter()
            task_id = self.send()
            self.done.blpop([DONE], timeout=30)
            self.pickup.append(time.perf_counter() - started)
            if self.tracked:
                ended = functools.partial(_ended, tracker, task_id)
                _wait_for(ended, 30, "the record to end", 0.0005)
                self.pickup_recorded.append(time.perf_counter() - started)


def _ended(tracker: jobtrail.Tracker, task_id: str) -> bool:
    try:
        return tracker.get(task_id).terminal
    except jobtrail.JobNotFound:
        return False


def _wait_for(done: Callable[[], bool], timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def measure(
    broker: str, url: str, tasks: int, rounds: int, pickups: int
) -> tuple[Side, Side, dict[str, int]]:
    """Plain and tracked rounds, interleaved, against one store."""
    tracker = jobtrail.Tracker(url).open()  # migrated before anything is timed
    done = redis.Redis.from_url(broker)
    plain = Side(make_app(broker, False), False, done)
    tracked = Side(make_app(broker, True, tracker), True, done)
    kind = TASKS[True]
    tracked.recorded = lambda: tracker.list(kind=kind, status="succeeded", limit=1).total_count
    try:
        with celery_worker(broker, url, False), celery_worker(broker, url, True):
            plain.warm()
            tracked.warm()
            warmed = tracked.recorded()
            for n in range(1, rounds + 1):
                plain.round(tasks, 0)
                tracked.round(tasks, warmed + n * tasks)
            plain.idle_pickups(pickups, tracker)
            tracked.idle_pickups(pickups, tracker)
        by_status = tracker.stats(days=1, kind=kind).jobs_by_status
    finally:
        tracker.close()
    return plain, tracked, by_status


def _ms(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[max(int(len(ordered) * share + 0.5) - 1, 0)] * 1000


def report(dialect: str, plain: Side, tracked: Side, by_status: dict[str, int]) -> None:
    med = statistics.median
    e2e_plain, e2e_tracked = med(plain.e2e), med(tracked.e2e)
    print(f"{dialect}: end to end (tasks/s, median of {len(plain.e2e)}):")
    print(f"  plain   {e2e_plain:7,.0f}   rounds {[round(r) for r in plain.e2e]}")
    print(f"  tracked {e2e_tracked:7,.0f}   rounds {[round(r) for r in tracked.e2e]}")
    print(f"  tracking adds {(e2e_plain / e2e_tracked - 1) * 100:+.1f}% to the time per task")
    print(f"  publish, one call each: plain {med(plain.publish):,.0f}/s, ", end="")
    print(f"tracked {med(tracked.publish):,.0f}/s")
    for side in (plain, tracked):
        name = "tracked" if side.tracked else "plain  "
        line = f"  idle pickup {name}: ran p50 {_ms(side.pickup, 0.5):5.1f} ms, "
        line += f"p99 {_ms(side.pickup, 0.99):5.1f} ms"
        if side.pickup_recorded:
            line += f"; recorded p50 {_ms(side.pickup_recorded, 0.5):5.1f} ms, "
            line += f"p99 {_ms(side.pickup_recorded, 0.99):5.1f} ms"
        print(line)
    print(f"  jobtrail records: {by_status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pickups", type=int, default=100)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.path.insert(0, str(ROOT))
    from tests.servers import start_redis

    server = start_redis()
    if server is None:
        raise SystemExit("redis-server is needed for this benchmark")
    print(f"celery, {args.tasks} no-op tasks a round, prefork x2 worker, Redis broker")
    try:
        for dialect in args.dialect or ["postgresql", "sqlite"]:
            with database(dialect, "celery") as url:
                plain, tracked, by_status = measure(
                    server.url(), url, args.tasks, args.rounds, args.pickups
                )
            report(dialect, plain, tracked, by_status)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
