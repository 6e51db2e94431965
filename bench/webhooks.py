"""Webhooks' cost: end-to-end no-op throughput without the outbox trigger, with it and no
subscription, and with 3 subscriptions to a local receiver and 2 alert rules; then how fast
the backlog of deliveries drains, each one delivered exactly once to the receiver, and how soon
a failure reaches it. ``--backlog N``: N deliveries through a receiver down for ``--down`` s."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
import structlog

import jobtrail
from bench.servers import ROOT, database
from jobtrail.courier import Courier


@contextmanager
def receiver() -> Iterator[str]:
    """The tests' receiver in a process of its own (its work is not this process's)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.webhook_receiver"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(10)


def counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url) as answer:  # the receiver's GET: what it got
        got: dict[str, int] = json.load(answer)
    return got


NOTIFIED = "3 subscriptions + 2 alert rules"


def run(url: str, jobs: int, threads: int, mode: str) -> str:
    """Run ``jobs`` no-op jobs; ``mode``: "no trigger", "no subscription" or ``NOTIFIED``."""
    tracker = jobtrail.Tracker(url, webhook_allow_private=True).open()
    if mode == "no trigger":
        with tracker.store.database.engine.begin() as conn:
            on = " ON job_events" if tracker.store.database.dialect == "postgresql" else ""
            conn.execute(sa.text(f"DROP TRIGGER jobtrail_webhook_outbox{on}"))

    @tracker.job("noop")
    def noop(ctx: jobtrail.Context) -> None: ...

    with receiver() as hook:
        if mode == NOTIFIED:
            for _ in range(3):
                tracker.webhooks.subscribe(hook)
            channel = "json://" + hook.split("://", 1)[1]  # never called: every job succeeds
            tracker.alert("noop-failed", "failed", channels=[channel], kind="noop")
            tracker.alert("noop-rate", "failure_rate", channels=[channel], kind="noop")
        started = time.perf_counter()
        tracker.submit_many("noop", [{}] * jobs)
        tracker.worker(concurrency=threads, poll_interval=0.01).run(burst=True)
        ran = jobs / (time.perf_counter() - started)
        line = f"{mode:<30} submit + run {ran:>6,.0f} jobs/s"
        if mode == NOTIFIED:
            line += drain(tracker, hook, jobs * 3 * 3)  # created, started, succeeded
    tracker.close()
    return line


def drain(tracker: jobtrail.Tracker, hook: str, expected: int) -> str:
    """Send the backlog left when the jobs ended; how fast, and how many distinct ids."""
    courier = Courier.of(tracker.runtime)
    started = time.perf_counter()
    while counts(hook)["accepted"] < expected:
        if not courier.turn():
            time.sleep(0.01)
    took = time.perf_counter() - started
    got = counts(hook)
    return (
        f"; backlog drained, {got['accepted']} deliveries at {got['accepted'] / took:,.0f}/s "
        f"({got['distinct']} distinct ids)"
    )


def latency(url: str, jobs: int) -> str:
    """From a job's failure (its ``failed`` event) to the receiver's answer, on an otherwise
    idle system: a worker and its courier waiting, one failing job at a time."""
    from tests.webhook_receiver import serving

    tracker = jobtrail.Tracker(url, webhook_allow_private=True).open()

    @tracker.job("fails")
    def fails(ctx: jobtrail.Context) -> None:
        raise RuntimeError("failed on purpose")

    took: list[float] = []
    with serving() as receiver, tracker.worker(concurrency=1):
        tracker.webhooks.subscribe(receiver.url, event_types=["job.failed"])
        for n in range(jobs):
            job = fails.submit()
            assert receiver.wait_for(lambda got: len(got) > len(took), timeout=10)
            event = tracker.events(job.id)[-1]
            arrived = receiver.accepted()[n].at
            took.append((arrived - event.at).total_seconds())
    tracker.close()
    took.sort()
    p50, p99 = took[len(took) // 2], took[min(len(took) - 1, int(len(took) * 0.99))]
    return f"failure to receiver: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


def rss_mib() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def backlog(url: str, count: int, down: float, backoff: float) -> str:
    """``count`` deliveries made while the receiver is down for ``down`` seconds, sent by a
    running courier (``backoff``: its first retry delay); all delivered once it is back?"""
    from tests.servers import free_port
    from tests.webhook_receiver import Receiver, serving

    tracker = jobtrail.Tracker(url, webhook_allow_private=True, webhook_backoff=backoff).open()

    @tracker.job("noop")
    def noop(ctx: jobtrail.Context) -> None: ...

    port = free_port()
    tracker.webhooks.subscribe(f"http://127.0.0.1:{port}/hook", event_types=["job.created"])
    courier = Courier.of(tracker.runtime).start()
    tracker.submit_many("noop", [{}] * count)
    memory = [rss_mib()]
    started = time.monotonic()
    while time.monotonic() - started < down:
        time.sleep(min(5.0, down))
        memory.append(rss_mib())
    back = time.monotonic()
    with serving(Receiver(), port=port) as receiver:
        while len(receiver.accepted()) < count:
            time.sleep(0.5)
            memory.append(rss_mib())
        took = time.monotonic() - back
        ids = {r.id for r in receiver.accepted()}
    courier.stop(5)
    tracker.close()
    return (
        f"{count} deliveries, receiver down {down:.0f} s: all {len(ids)} distinct ids "
        f"delivered {took:.0f} s after it came back; RSS {min(memory):.0f}–{max(memory):.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--backlog", type=int, default=0, help="Only the backlog run, of N.")
    parser.add_argument("--down", type=float, default=300.0)
    parser.add_argument("--backoff", type=float, default=5.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.backlog:
        for dialect in args.dialect or ["sqlite", "postgresql"]:
            with database(dialect, "backlog") as url:
                print(f"{dialect:<10} {backlog(url, args.backlog, args.down, args.backoff)}")
        return
    for dialect in args.dialect or ["sqlite", "postgresql"]:
        for mode in ("no trigger", "no subscription", NOTIFIED):
            with database(dialect, "webhooks") as url:
                print(f"{dialect:<10} {args.jobs} jobs: {run(url, args.jobs, args.threads, mode)}")
        with database(dialect, "latency") as url:
            print(f"{dialect:<10} {args.latency_jobs} jobs: {latency(url, args.latency_jobs)}")


if __name__ == "__main__":
    main()
