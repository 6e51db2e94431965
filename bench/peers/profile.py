"""Where jobtrail's time goes: pyinstrument profiles of its submit and pickup paths on SQLite,
written to bench/results/profile-submit.txt and profile-pickup.txt."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
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


def submit_and_pickup(jobs: int, directory: Path) -> tuple[str, str]:
    """Profiles of ``jobs`` one-at-a-time submits, then of a 2-thread worker running them."""
    with tempfile.TemporaryDirectory() as tmp:
        tracker = build_tracker(f"sqlite:///{Path(tmp) / 'profile.db'}")
        submit = profiled(lambda: [tracker.submit("noop", {}) for _ in range(jobs)])
        worker = tracker.worker(concurrency=2)
        pickup = profiled(lambda: worker.run(burst=True))
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
