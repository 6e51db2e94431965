"""End-to-end worker throughput: submit N jobs, run them with T threads, report jobs/s."""

from __future__ import annotations

import argparse
import logging
import time

import structlog

import jobtrail
from bench.servers import database


def run(url: str, jobs: int, threads: int, progress_calls: int) -> tuple[float, float]:
    """Submit ``jobs`` jobs, run them in a burst; (submit jobs/s, run jobs/s)."""
    tracker = jobtrail.Tracker(url).open()  # migrated before anything is timed

    @tracker.job("noop")
    def noop(ctx: jobtrail.Context) -> None:
        for n in range(progress_calls):
            ctx.progress(n * 100 / progress_calls, f"step {n}")

    started = time.perf_counter()
    tracker.submit_many("noop", [{}] * jobs)
    submitted = time.perf_counter() - started
    started = time.perf_counter()
    tracker.worker(concurrency=threads, poll_interval=0.01).run(burst=True)
    ran = time.perf_counter() - started
    stats = tracker.stats(days=1)
    assert stats.jobs_by_status == {"succeeded": jobs}, stats.jobs_by_status
    tracker.close()
    return jobs / submitted, jobs / ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--progress-calls", type=int, action="append")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for dialect in args.dialect or ["sqlite", "postgresql"]:
        for calls in args.progress_calls or [0, 20]:
            with database(dialect, "throughput") as url:
                submit, ran = run(url, args.jobs, args.threads, calls)
            print(
                f"{dialect:<10} {args.jobs} jobs, {args.threads} threads, "
                f"{calls:>2} progress calls/job: submit {submit:>7,.0f} jobs/s, "
                f"run end to end {ran:>6,.0f} jobs/s"
            )


if __name__ == "__main__":
    main()
