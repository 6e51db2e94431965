"""Where jobtrail's time goes on SQLite: a pyinstrument tree of one-at-a-time submits, and
cProfile over every worker thread of a 2-thread worker running them (claim → run → record);
written to bench/results/profile-submit.txt and profile-pickup.txt."""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from pyinstrument import Profiler

from bench.peers.sql_peers import build_tracker
from bench.servers import ROOT


def profiled(fn: Callable[[], object]) -> str:
    """The call tree of ``fn`` as text, frames under 2% of the time folded away."""
    profiler = Profiler(interval=0.0005)
    with profiler:
        fn()
    return profiler.output_text(unicode=True, color=False, show_all=False, time="percent_of_total")


@contextmanager
def threads_profiled() -> Iterator[list[cProfile.Profile]]:
    """A cProfile of each thread started inside the block (cProfile sees one thread only)."""
    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original, thread)

    threading.Thread.run = run  # type: ignore[method-assign,assignment]
    try:
        yield profiles
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]


def summary(profiles: list[cProfile.Profile], lines: int = 30) -> str:
    """The functions that took the most time, with and without the calls they made."""
    text = io.StringIO()
    stats = pstats.Stats(*profiles, stream=text).strip_dirs()
    text.write("By time including the calls made (cumulative):\n")
    stats.sort_stats("cumulative").print_stats(lines)
    text.write("By time in the function itself (tottime):\n")
    stats.sort_stats("tottime").print_stats(lines // 2)
    return text.getvalue()


def submit_and_pickup(jobs: int, directory: Path) -> tuple[str, str]:
    """Profiles of ``jobs`` one-at-a-time submits, then of a 2-thread worker running them."""
    with tempfile.TemporaryDirectory() as tmp:
        tracker = build_tracker(f"sqlite:///{Path(tmp) / 'profile.db'}")
        submit = profiled(lambda: [tracker.submit("noop", {}) for _ in range(jobs)])
        with threads_profiled() as profiles:
            tracker.worker(concurrency=2).run(burst=True)
        pickup = summary(profiles)
        tracker.close()
    return submit, pickup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    submit, pickup = submit_and_pickup(args.jobs, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("submit", submit), ("pickup", pickup)):
        path = args.out / f"profile-{name}.txt"
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
