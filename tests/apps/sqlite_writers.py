"""A process of writer threads on one store, for the SQLite contention test:
``python -m tests.apps.sqlite_writers URL THREADS ROUNDS START_AT``.

From the wall-clock time ``START_AT`` on, each thread makes ``ROUNDS`` rounds of the writes an
app makes (submit, cancel, work tracked in place, an external job reported to its end) and
prints one JSON line per thread: how many rounds it finished and every error it met.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from jobtrail import Status, Tracker
from jobtrail.jobs import NewJob
from tests.apps.reliability_handlers import register


def chain(exc: BaseException) -> str:
    """The exception and everything it was raised from, as text."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


def one_round(tracker: Tracker, name: str, n: int) -> None:
    queued = tracker.submit("work", {"items": 1}, labels={"writer": name})
    tracker.cancel(queued.id)
    with tracker.track("in_place", labels={"writer": name}) as ctx:
        for step in range(5):
            ctx.progress(step * 20, f"{name} round {n} step {step}")
            ctx.flush()
    external, _ = tracker.add(NewJob(kind="external", status=Status.RUNNING, labels={"w": name}))
    tracker.report(external.id, {"message": f"{name} round {n}", "progress": 50})
    tracker.report(external.id, {"result": {"round": n}}, Status.SUCCEEDED)


def writer(tracker: Tracker, name: str, rounds: int, start_at: float, out: list[Any]) -> None:
    done, errors = 0, []
    time.sleep(max(start_at - time.time(), 0))
    for n in range(rounds):
        try:
            one_round(tracker, name, n)
            done += 1
        except Exception as exc:
            errors.append(chain(exc))
    out.append({"writer": name, "rounds": done, "errors": errors})


def main(url: str, threads: int, rounds: int, start_at: float) -> None:
    results: list[Any] = []
    with Tracker(url, flush_interval=0.01) as tracker:
        register(tracker)
        pool = [
            threading.Thread(
                target=writer, args=(tracker, f"{os.getpid()}-{n}", rounds, start_at, results)
            )
            for n in range(threads)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
