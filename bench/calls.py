"""Per-call costs: ctx.advance()/progress() in a tight loop, and get/list/stats on 100,000 jobs."""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog

import jobtrail
from bench.servers import database
from jobtrail.store.tables import jobs


def per_call(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(median, p99) microseconds of ``fn`` over ``n`` timed calls."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def context_calls(tracker: jobtrail.Tracker, n: int) -> None:
    with tracker.track("bench") as ctx:
        ctx.set_total(n)
        started = time.perf_counter()
        for _ in range(n):
            ctx.advance()
        advance = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        for i in range(n):
            ctx.progress(message=f"item {i}")
        progress = (time.perf_counter() - started) / n * 1e6
    events = len(tracker.events(ctx.job_id))
    print(f"  ctx.advance():            {advance:6.2f} µs/call ({n:,} calls)")
    print(f"  ctx.progress(message=…):  {progress:6.2f} µs/call ({events} events written)")


def fill(tracker: jobtrail.Tracker, count: int) -> None:
    """``count`` finished jobs over 30 days, 200 owners, 5 kinds (inserted in bulk)."""
    now = datetime.now(UTC)
    rows = []
    statuses = ["succeeded"] * 8 + ["failed", "partial"]
    for n in range(count):
        created = now - timedelta(seconds=n * 25)
        rows.append(
            {
                "id": f"job-{n:08d}",
                "kind": f"kind_{n % 5}",
                "owner": f"owner-{n % 200}",
                "trigger": "api",
                "queue": "default",
                "priority": 1,
                "status": statuses[n % 10],
                "progress": 100.0,
                "attempt": 1,
                "max_attempts": 1,
                "created_at": created,
                "updated_at": created,
                "run_after": created,
                "started_at": created,
                "completed_at": created + timedelta(seconds=n % 97),
                "duration_seconds": float(n % 97),
                "cancel_requested": False,
                "stalled": False,
                "labels": {},
            }
        )
    with tracker.store.database.write() as conn:
        for start in range(0, count, 5000):
            conn.execute(sa.insert(jobs), rows[start : start + 5000])


def reads(tracker: jobtrail.Tracker, count: int) -> None:
    fill(tracker, count)
    job_id = f"job-{count // 2:08d}"
    for name, fn, n in (
        ("get(id)", lambda: tracker.get(job_id), 2000),
        ("list(owner=…, limit=50)", lambda: tracker.list(owner="owner-7"), 300),
        ("list(status=failed)", lambda: tracker.list(status="failed"), 300),
        ("list() page 1", lambda: tracker.list(), 100),
        ("stats(days=30)", lambda: tracker.stats(days=30), 20),
        ("stats(owner=…)", lambda: tracker.stats(days=30, owner="owner-7"), 100),
    ):
        median, p99 = per_call(fn, n)
        print(f"  {name:<26} median {median / 1000:7.2f} ms   p99 {p99 / 1000:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for dialect in args.dialect or ["sqlite", "postgresql"]:
        with database(dialect, "calls") as url:
            tracker = jobtrail.Tracker(url).open()  # migrated before anything is timed
            print(f"{dialect}:")
            context_calls(tracker, args.calls)
            print(f" reads on {args.jobs:,} jobs:")
            reads(tracker, args.jobs)
            tracker.close()


if __name__ == "__main__":
    main()
