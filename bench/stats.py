"""Statistics at a million jobs: build the jobs with one bulk insert, then time ``stats()``
(before and after the summaries are rolled up), the first roll-up, the queues, the throughput
by the minute and job listings. Prints figures; asserts nothing about speed.

    python -m bench.stats [--jobs 1000000] [--dialect sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

import jobtrail
from bench.servers import database
from jobtrail.store.tables import jobs

KINDS = [f"kind_{n}" for n in range(20)]
OWNERS = [f"owner_{n}" for n in range(50)]
OUTCOMES = ["succeeded"] * 85 + ["failed"] * 5 + ["partial"] * 5 + ["cancelled"] * 3
ACTIVE = 2000
"""Jobs left queued or running: the part of a big store that is never summarized."""


def rows(count: int, now: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` jobs created over the last 30 days, nearly all finished."""
    rng = random.Random(seed)
    span = timedelta(days=30).total_seconds()
    for n in range(count):
        created = now - timedelta(seconds=rng.random() * span)
        active = n < ACTIVE
        status = rng.choice(["queued", "running"]) if active else rng.choice(OUTCOMES)
        duration = None if active or status == "cancelled" else rng.expovariate(1 / 20)
        started = None if status in ("queued", "cancelled") else created
        ended = None if active else created + timedelta(seconds=duration or 0.0)
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "key_scope": "",
            "kind": rng.choice(KINDS),
            "owner": rng.choice(OWNERS),
            "trigger": "api",
            "queue": "default" if n % 10 else "batch",
            "priority": 1,
            "status": status,
            "progress": 100.0 if status == "succeeded" else 0.0,
            "attempt": 0 if status == "queued" else 1,
            "max_attempts": 1,
            "created_at": created,
            "updated_at": ended or created,
            "run_after": created,
            "started_at": started,
            "completed_at": ended,
            "duration_seconds": duration,
            "cancel_requested": False,
            "stalled": False,
            "external": False,
        }


def build(tracker: jobtrail.Tracker, count: int) -> float:
    """Insert ``count`` jobs in batches of 20,000 rows (on SQLite through the driver's
    ``executemany``, the fastest bulk insert it has); seconds taken."""
    started = time.perf_counter()
    source = rows(count, tracker.now())
    batches = iter(lambda: list(itertools.islice(source, 20_000)), [])
    if tracker.store.database.dialect != "sqlite":
        with tracker.store.database.engine.begin() as conn:
            for batch in batches:
                conn.execute(sa.insert(jobs), batch)
        return time.perf_counter() - started
    names = list(next(rows(1, tracker.now())))
    insert = f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    raw = tracker.store.database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        # A bench's store: a big page cache and no fsync while it is built (the jobs' indexes
        # are random-access b-trees; the default cache spills them to disk every batch).
        cursor.execute("PRAGMA cache_size = -1000000")
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("BEGIN")  # the store's connections run in autocommit mode
        for batch in batches:
            cursor.executemany(insert, [[_sqlite(row[n]) for n in names] for row in batch])
        cursor.execute("COMMIT")
    finally:
        raw.close()
    return time.perf_counter() - started


def _sqlite(value: object) -> object:
    """A value as SQLAlchemy stores it in SQLite (timestamps: naive UTC text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def timed(what: str, call: Callable[[], object], runs: int = 7) -> float:
    """Print and return the median milliseconds of ``call`` over ``runs`` runs."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    median = statistics.median(times)
    print(f"  {what:<44} {median:9.2f} ms  (min {min(times):.2f})")
    return median


def finish_more(tracker: jobtrail.Tracker, count: int) -> None:
    """``count`` jobs finished just now: the live tail after the watermark."""
    now = tracker.now()
    fresh = [
        row | {"completed_at": now, "updated_at": now, "created_at": now - timedelta(seconds=5)}
        for row in rows(count, now, seed=11)
    ]
    for row in fresh:
        row["id"] = str(uuid.uuid4())
        row["status"] = "succeeded"
        row["duration_seconds"] = 5.0
    with tracker.store.database.engine.begin() as conn:
        conn.execute(sa.insert(jobs), fresh)


def run(url: str, count: int) -> None:
    with jobtrail.Tracker(url) as tracker:

        def hour_ago() -> datetime:
            return tracker.now().astimezone(UTC) - timedelta(hours=1)

        print(f"building {count:,} jobs ({tracker.store.database.dialect}) ...")
        print(f"  bulk insert                                  {build(tracker, count):9.1f} s")
        print("before any roll-up (every finished job read from the jobs table):")
        timed("stats(days=30)", lambda: tracker.stats(days=30), runs=3)
        started = time.perf_counter()
        rolled = tracker.store.summaries.roll_up(lag=timedelta(0))
        seconds = time.perf_counter() - started
        print(f"  first roll-up of {rolled.jobs:,} jobs               {seconds:9.1f} s")
        finish_more(tracker, 2000)
        print("after the roll-up, with 2,000 jobs finished since the watermark:")
        timed("stats(days=30)", lambda: tracker.stats(days=30))
        timed("stats(days=1)", lambda: tracker.stats(days=1))
        timed("stats(days=30, owner=…)", lambda: tracker.stats(days=30, owner=OWNERS[3]))
        timed("stats(days=30, kind=…)", lambda: tracker.stats(days=30, kind=KINDS[3]))
        timed("stats(days=30, group_by='kind')", lambda: tracker.stats(group_by="kind"), runs=3)
        timed("timeline(30 days)", lambda: tracker.ops.timeline(30))
        minute = timedelta(minutes=1)
        timed("finished per minute, last hour", lambda: tracker.ops.finished(hour_ago(), minute))
        timed("queues()", tracker.ops.queues)
        timed("incremental roll-up of 2,000 jobs", lambda: tracker.ops.roll_up(), runs=1)
        timed("list() page 1 + exact count", lambda: tracker.list(limit=50))
        timed("list(owner=…) page 1 + exact count", lambda: tracker.list(owner=OWNERS[3]))
        timed("list(status=queued) + exact count", lambda: tracker.list(status="queued"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql"], default="sqlite")
    options = parser.parse_args()
    with database(options.dialect, "bench_stats") as url:
        run(url, options.jobs)


if __name__ == "__main__":
    main()
