"""Celery throughput with and without jobtrail tracking: 2,000 no-op tasks, Redis broker,
the same in-process worker settings for both."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import structlog
from celery import Celery
from celery.contrib.testing.worker import start_worker

import jobtrail
from bench.servers import ROOT
from jobtrail.integrations.celery import TrackedTask, install


def make_app(broker: str, tracker: jobtrail.Tracker) -> Celery:
    app = Celery("bench", broker=broker)
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
    counter = redis.Redis.from_url(broker)
    install(app, tracker)

    @app.task(name="plain")
    def plain() -> None:
        counter.incr("done")

    @app.task(name="tracked", base=TrackedTask, bind=True)
    def tracked(self: Any) -> None:
        counter.incr("done")

    return app


def run(app: Celery, name: str, tasks: int, concurrency: int) -> float:
    counter = redis.Redis.from_url(app.conf.broker_url)
    counter.delete("done")
    started = time.perf_counter()
    with start_worker(app, pool="threads", concurrency=concurrency, perform_ping_check=False):
        for _ in range(tasks):
            app.send_task(name)
        while int(counter.get("done") or 0) < tasks:
            time.sleep(0.01)
    return tasks / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.path.insert(0, str(ROOT))
    from tests.servers import start_redis

    server = start_redis()
    if server is None:
        raise SystemExit("redis-server is needed for this benchmark")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tracker = jobtrail.Tracker(f"sqlite:///{Path(tmp) / 'celery.db'}")
            app = make_app(server.url(), tracker)
            plain = run(app, "plain", args.tasks, args.concurrency)
            tracked = run(app, "tracked", args.tasks, args.concurrency)
            finished = tracker.stats(days=1).jobs_by_status
            tracker.close()
    finally:
        server.stop()
    print(f"celery, {args.tasks} no-op tasks, threads pool x{args.concurrency}, Redis broker:")
    print(f"  without jobtrail: {plain:7,.0f} tasks/s")
    print(f"  with jobtrail:    {tracked:7,.0f} tasks/s  (jobs recorded: {finished})")
    print(f"  overhead: {plain / tracked:.2f}x the time per task")


if __name__ == "__main__":
    main()
