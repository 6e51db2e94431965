"""What the reliability tests share: the soak scale, real ``jobtrail worker`` and ``jobtrail serve``
processes, the checks every fault ends with, and figures read from ``/proc``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from jobtrail import Job, Status, Tracker
from jobtrail.states import TERMINAL
from jobtrail.store.tables import job_events, jobs
from tests.servers import free_port
from tests.waiting import until, until_answers

REPO = Path(__file__).resolve().parents[2]
JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")
APP = "tests.apps.reliability_app:tracker"

SCALE = max(int(os.environ.get("JOBTRAIL_SOAK_SCALE", "1")), 1)
"""How many times larger than in ``make test`` each test is (``make soak`` raises it)."""
SOAK_SECONDS = float(os.environ.get("JOBTRAIL_SOAK_SECONDS", "0"))
"""How long the load test runs, when set (``make soak``: 30 minutes)."""

TERMINAL_EVENTS = frozenset(s.value for s in TERMINAL)


def scaled(n: int) -> int:
    """``n`` times the soak scale."""
    return n * SCALE


def budget(seconds: float) -> float:
    """A test's timeout: ``seconds`` at scale 1, growing with the scale and the soak time."""
    return seconds * SCALE + 2 * SOAK_SECONDS


def command_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a ``jobtrail`` command: this store, quick timings, and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    return env | {
        "JOBTRAIL_DATABASE_URL": database_url,
        "JOBTRAIL_POLL_INTERVAL": "0.05",
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        "JOBTRAIL_HEARTBEAT_INTERVAL": "0.3",
        "JOBTRAIL_HEARTBEAT_TIMEOUT": "1.5",
        "JOBTRAIL_GRACE_PERIOD": "3",
        **settings,
    }


@dataclass
class Served:
    """One ``jobtrail serve`` process."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def client(self, token: str, timeout: float = 10.0) -> httpx.Client:
        """A client of ``/api/v1`` as ``token``."""
        return httpx.Client(
            base_url=self.api,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout),
        )


@dataclass
class Processes:
    """Starts ``jobtrail worker`` and ``jobtrail serve`` processes on one store and kills
    whatever is left at the end (SIGCONT first, for a process a test froze)."""

    database_url: str
    directory: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def _spawn(self, argv: list[str], name: str, settings: dict[str, str]) -> Path:
        log = self.directory / f"{name}-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [JOBTRAIL, *argv],
                cwd=REPO,
                env=command_env(self.database_url, **settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        self.logs.append(log)
        return log

    def worker(self, concurrency: int = 2, **settings: str) -> subprocess.Popen[bytes]:
        """Start ``jobtrail worker`` on the reliability app."""
        self._spawn(["worker", "--app", APP, "-c", str(concurrency)], "worker", settings)
        return self.started[-1]

    def serve(self, *options: str, **settings: str) -> Served:
        """Start ``jobtrail serve`` on the reliability app and wait until ``/health`` answers."""
        port = free_port()
        argv = ["serve", "--app", APP, "--port", str(port), *options]
        log = self._spawn(argv, "serve", settings)
        served = Served(self.started[-1], f"http://127.0.0.1:{port}", log)

        def alive() -> None:
            code = served.process.poll()
            assert code is None, f"serve exited {code}:\n{self.output()}"

        until_answers(f"{served.api}/health", 60, what="jobtrail serve to answer", alive=alive)
        return served

    def output(self, tail: int = 3000) -> str:
        """The last lines every process printed, for failure messages."""
        return "\n".join(
            f"--- {log.name} (pid {p.pid}, exit {p.returncode}):\n"
            + log.read_text(errors="replace")[-tail:]
            for p, log in zip(self.started, self.logs, strict=True)
        )

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(timeout=30)


def create_token(database_url: str, owner: str | None = None) -> str:
    """An API token made by the real ``jobtrail tokens create``."""
    options = ["--name", f"t{time.monotonic_ns()}"] + (["--owner", owner] if owner else [])
    done = subprocess.run(
        [JOBTRAIL, "tokens", "create", *options],
        cwd=REPO,
        env=command_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def lines(log: Path, first_word: str) -> list[list[str]]:
    """The handlers' log lines starting with ``first_word``, split into words."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [row for row in rows if row and row[0] == first_word]


# -- the checks every fault ends with ---------------------------------------------------------


def histories(tracker: Tracker, ids: Iterable[str]) -> dict[str, list[str]]:
    """The event types of each job, oldest first, read in one query."""
    wanted = set(ids)
    found: dict[str, list[str]] = defaultdict(list)
    query = sa.select(job_events.c.job_id, job_events.c.type).order_by(job_events.c.id)
    with tracker.store.database.engine.connect() as conn:
        for job_id, kind in conn.execute(query):
            if job_id in wanted:
                found[job_id].append(kind)
    return {job_id: found[job_id] for job_id in wanted}


def records(tracker: Tracker, ids: Iterable[str]) -> dict[str, Job]:
    """The records of these jobs (all must exist)."""
    return {job_id: tracker.get(job_id) for job_id in ids}


def count_rows(tracker: Tracker, kind: str) -> int:
    """How many jobs of ``kind`` the store holds."""
    query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.kind == kind)
    with tracker.store.database.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def every_job_ended_once(tracker: Tracker, ids: Iterable[str]) -> list[str]:
    """What is wrong with these jobs' records and histories: each must be terminal, with
    ``attempt ≤ max_attempts``, exactly one terminal event, and nothing after it."""
    ids = list(ids)
    problems = []
    events = histories(tracker, ids)
    for job_id, job in records(tracker, ids).items():
        types = events[job_id]
        ends = [t for t in types if t in TERMINAL_EVENTS]
        if not job.terminal:
            problems.append(f"{job_id} is {job.status} (attempt {job.attempt}): {types}")
        if not 0 <= job.attempt <= job.max_attempts:
            problems.append(f"{job_id} attempt {job.attempt} of {job.max_attempts}: {types}")
        if ends != [job.status.value]:
            problems.append(f"{job_id} is {job.status} with terminal events {ends}: {types}")
        elif types[-1] != job.status.value:
            problems.append(f"{job_id} has events after its end: {types}")
    return problems


def wait_until_ended(tracker: Tracker, ids: Iterable[str], timeout: float) -> None:
    """Wait until every one of these jobs is terminal (fails naming those that are not)."""
    pending = set(ids)

    def settled() -> bool:
        page = tracker.list(status=[Status.QUEUED, Status.WAITING, Status.RUNNING], limit=1000)
        pending.intersection_update(job.id for job in page.jobs)
        return not pending

    until(settled, timeout, what=f"every job to end ({len(pending)} not yet)", poll=0.2)


# -- figures from /proc ----------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, in KiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_files(pid: int) -> Counter[str]:
    """What process ``pid``'s file descriptors point at: ``socket``, ``pipe``, an anonymous
    inode's name, or a file's name."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(("socket:", "pipe:")):
            kinds[target.split(":")[0]] += 1
        else:
            kinds[Path(target).name] += 1
    return kinds


def client_connections(pid: int, port: int) -> int:
    """How many TCP connections clients have open to process ``pid``'s listening ``port``
    (from /proc/net/tcp*, matched to the process's socket inodes)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            listening = fields[3] == "0A"
            if fields[9] in inodes and local_port == port and not listening:
                count += 1
    return count


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu_share(pid: int, seconds: float = 5.0) -> float:
    """The share of one CPU process ``pid`` uses over ``seconds`` in which nobody calls it."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of ``values`` (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]
