"""Pickup latency: an idle worker in the submitting process, one job at a time, submit →
finished (p50/p99); the same through a second process's worker (polled)."""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import structlog

import jobtrail
from bench.servers import database


def in_process(url: str, jobs: int) -> list[float]:
    """Seconds from submit to a terminal record, with the worker idle before each submit."""
    tracker = jobtrail.Tracker(url).open()  # migrated before anything is timed

    @tracker.job("noop")
    def noop(ctx: jobtrail.Context) -> None:
        pass

    samples = []
    with tracker.worker(concurrency=1):
        for _ in range(jobs):
            time.sleep(0.01)  # let the worker go idle
            started = time.perf_counter()
            job = noop.submit()
            tracker.wait(job.id, timeout=30, poll=0.0005)
            samples.append(time.perf_counter() - started)
    tracker.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for dialect in args.dialect or ["sqlite", "postgresql"]:
        with database(dialect, "pickup") as url:
            samples = sorted(in_process(url, args.jobs))
        p50 = statistics.median(samples) * 1000
        p99 = samples[int(len(samples) * 0.99) - 1] * 1000
        print(
            f"{dialect:<10} idle worker, same process: submit → finished p50 {p50:6.1f} ms, "
            f"p99 {p99:6.1f} ms ({args.jobs} jobs)"
        )


if __name__ == "__main__":
    main()
