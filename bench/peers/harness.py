"""What every system in the comparison offers (`Peer`) and the measurements taken of each."""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from bench.servers import ROOT

EXECUTORS = 2  # worker processes or threads per system: the same for every one
WORKER_START_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 30.0
POLL = 0.0002  # how often a client looks again for a finished job


class JobFailed(RuntimeError):
    """Raised by the benchmark job when it was asked to fail (the failed rows of the lists)."""


class Peer(ABC):
    """One job system as its documentation sets it up, driven through its public API.

    Its job is the same everywhere: ``noop(owner, progress, fail)`` reports ``progress`` updates
    through the system's own progress mechanism, then raises when ``fail`` is set.
    """

    name: str
    version: str
    settings: str  # how it was configured, for docs/performance.md

    @abstractmethod
    def reset(self) -> None:
        """Forget every job (the executors are stopped)."""

    @abstractmethod
    def worker_commands(self) -> list[list[str]]:
        """The commands that start the executors, as the system's docs say to run them."""

    def worker_env(self) -> dict[str, str]:
        """Extra environment of the worker processes."""
        return {}

    @abstractmethod
    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        """Enqueue one job; returns whatever the system hands back to find it again."""

    @abstractmethod
    def finished(self, handle: object) -> bool:
        """One status read: has the job reached a final state?"""

    @abstractmethod
    def done(self) -> int:
        """How many jobs finished (either way) since the last reset."""

    def list_failed(self, limit: int) -> int | None:
        """Fetch up to ``limit`` failed jobs; how many came back (None: no way to list)."""
        return None

    def list_owner(self, owner: str, limit: int) -> int | None:
        """Fetch up to ``limit`` jobs of one owner; how many came back (None: no way)."""
        return None

    def close(self) -> None:  # noqa: B027 (most peers hold nothing to release)
        """Release clients and connections."""


@dataclass
class Figures:
    """One system's row of the table (None where the system has no way to do it)."""

    submit_per_s: float
    end_to_end_per_s: float
    end_to_end_progress_per_s: float
    status_read_p99_ms: float
    pickup_p50_ms: float
    pickup_p99_ms: float
    list_failed_ms: float | None
    list_owner_ms: float | None
    end_to_end_jobs: int  # how many jobs the end-to-end runs had (fewer than ``jobs`` when slow)
    end_to_end_progress_jobs: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does."""

    jobs: int = 5000
    repeats: int = 3
    progress_calls: int = 20
    status_reads: int = 2000
    pickups: int = 50
    list_calls: int = 20
    probe_jobs: int = 200  # an end-to-end run this small first sizes the real one...
    run_seconds: float = 10.0  # ...to about this long, at most ``jobs`` (RQ forks per job)

    @property
    def owners(self) -> int:
        """Owners of the submitted jobs, so that one owner has 100 of them at full scale."""
        return max(1, self.jobs // 100)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(len(ordered) * fraction) - 1))]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, pause: float) -> None:
    """Poll ``condition`` every ``pause`` seconds; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(pause)


def wait_finished(peer: Peer, handle: object, timeout: float = 60.0) -> None:
    """Read the job's status until it is final."""
    wait_until(lambda: peer.finished(handle), timeout, f"{peer.name} job {handle}", POLL)


def wait_done(peer: Peer, count: int, timeout: float = 600.0) -> None:
    """Wait until ``count`` jobs have finished since the reset."""
    wait_until(lambda: peer.done() >= count, timeout, f"{count} {peer.name} jobs", 0.02)


@contextmanager
def executors(peer: Peer, log_dir: Path, proven: bool = True) -> Iterator[None]:
    """The peer's workers, running and (``proven``) ready: one job submitted has finished."""
    env = os.environ | {"PYTHONPATH": str(ROOT)} | peer.worker_env()
    processes = []
    for n, command in enumerate(peer.worker_commands()):
        log = open(log_dir / f"{peer.name}-worker-{n}.log", "ab")  # noqa: SIM115 (closed below)
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        processes.append((process, log))
    try:
        if proven:
            wait_finished(peer, peer.submit(), WORKER_START_TIMEOUT)
        yield
    finally:
        for process, _ in processes:
            process.send_signal(signal.SIGTERM)
        for process, log in processes:
            try:
                process.wait(WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def end_to_end(peer: Peer, jobs: int, progress: int) -> float:
    """Jobs/s from the first submit, one call each, to the last seen finished (workers up)."""
    target = peer.done() + jobs
    started = time.perf_counter()
    for _ in range(jobs):
        peer.submit(progress=progress)
    wait_done(peer, target)
    return jobs / (time.perf_counter() - started)


def sized_end_to_end(peer: Peer, scale: Scale, progress: int) -> tuple[float, int]:
    """Jobs/s of an end-to-end run of ``scale.jobs`` jobs, or of as many as the system gets
    through in about ``scale.run_seconds`` at the rate of a probe run; and that number."""
    probe = min(scale.jobs, scale.probe_jobs)
    rate = end_to_end(peer, probe, progress)
    jobs = max(probe, min(scale.jobs, int(rate * scale.run_seconds)))
    return end_to_end(peer, jobs, progress), jobs


def submit_rate(peer: Peer, scale: Scale) -> tuple[float, list[object]]:
    """Jobs/s of one submit call at a time with no worker running, and the jobs: every 10th
    fails once run, and they belong to ``scale.owners`` owners (the data the lists read)."""
    handles = []
    started = time.perf_counter()
    for n in range(scale.jobs):
        handles.append(peer.submit(owner=f"owner-{n % scale.owners}", fail=n % 10 == 0))
    return scale.jobs / (time.perf_counter() - started), handles


def timed_ms(fn: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` calls of ``fn``."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def idle_pickup(peer: Peer, samples: int) -> list[float]:
    """Milliseconds from a submit to an idle system until a client reads it finished."""
    found = []
    for _ in range(samples):
        time.sleep(0.05)  # let every executor go idle
        started = time.perf_counter()
        wait_finished(peer, peer.submit())
        found.append((time.perf_counter() - started) * 1000)
    return found


def list_ms(peer: Peer, scale: Scale) -> tuple[float | None, float | None]:
    """Median milliseconds of listing 500 failed jobs and one owner's 100 (None: no way)."""
    figures: list[float | None] = []
    listings: list[Callable[[], int | None]] = [
        partial(peer.list_failed, 500),
        partial(peer.list_owner, f"owner-{scale.owners - 1}", 100),
    ]
    for fn in listings:
        if fn() is None:
            figures.append(None)
        else:
            figures.append(statistics.median(timed_ms(fn, scale.list_calls)))
    return figures[0], figures[1]


def measure(peer: Peer, scale: Scale, log_dir: Path) -> Figures:
    """Every figure of ``peer``'s row: rates are medians of ``scale.repeats`` runs."""
    submits, plain, progress = [], [], []
    handles: list[object] = []
    for _ in range(scale.repeats):
        peer.reset()
        with executors(peer, log_dir):
            plain.append(sized_end_to_end(peer, scale, 0))
            progress.append(sized_end_to_end(peer, scale, scale.progress_calls))
        peer.reset()
        rate, handles = submit_rate(peer, scale)
        submits.append(rate)
    with executors(peer, log_dir, proven=False):  # a proof would queue behind every job
        wait_done(peer, scale.jobs)
        sample = random.Random(14).choices(handles, k=scale.status_reads)
        reads = [timed_ms(partial(peer.finished, handle), 1)[0] for handle in sample]
        failed_ms, owner_ms = list_ms(peer, scale)
        pickups = idle_pickup(peer, scale.pickups)
    return Figures(
        submit_per_s=statistics.median(submits),
        end_to_end_per_s=statistics.median(rate for rate, _ in plain),
        end_to_end_progress_per_s=statistics.median(rate for rate, _ in progress),
        end_to_end_jobs=max(jobs for _, jobs in plain),
        end_to_end_progress_jobs=max(jobs for _, jobs in progress),
        status_read_p99_ms=percentile(reads, 0.99),
        pickup_p50_ms=statistics.median(pickups),
        pickup_p99_ms=percentile(pickups, 0.99),
        list_failed_ms=failed_ms,
        list_owner_ms=owner_ms,
    )


def python_command(*args: str) -> list[str]:
    """A command run by this interpreter's environment (its console scripts live beside it)."""
    return [str(Path(sys.executable).parent / args[0]), *args[1:]]


def scratch_dir() -> Path:
    """A fresh directory for logs and SQLite files."""
    return Path(tempfile.mkdtemp(prefix="jobtrail-peers-"))
