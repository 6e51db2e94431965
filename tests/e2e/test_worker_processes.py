"""Worker processes started with the real ``jobtrail worker`` command: kills, rescues, SIGTERM and
many processes sharing one store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobtrail import Status, Tracker
from jobtrail.states import ACTIVE
from jobtrail.store.tables import job_events
from tests.apps.handlers import register
from tests.waiting import event_types, until

REPO = Path(__file__).resolve().parents[2]
JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")
APP = "tests.apps.worker_app:tracker"

HEARTBEAT_INTERVAL = 0.2
HEARTBEAT_TIMEOUT = 1.5
GRACE_PERIOD = 3.0


class WorkerProcesses:
    """Starts ``jobtrail worker`` processes on one store and kills whatever is left at the end."""

    def __init__(self, database_url: str, directory: Path) -> None:
        self.database_url = database_url
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *args: str,
        concurrency: int = 1,
        hello: bool = False,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        deploy: bool = False,
        poll_interval: float = 0.05,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> subprocess.Popen[bytes]:
        """Start one worker process (``args`` are extra CLI options, e.g. ``--burst``;
        ``hello``/``deploy``: the app's startup jobs, see ``tests.apps.worker_app``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")} | {
            "JOBTRAIL_DATABASE_URL": self.database_url,
            "JOBTRAIL_HEARTBEAT_INTERVAL": str(heartbeat_interval),
            "JOBTRAIL_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
            "JOBTRAIL_GRACE_PERIOD": str(GRACE_PERIOD),
            "JOBTRAIL_POLL_INTERVAL": str(poll_interval),
            "JOBTRAIL_FLUSH_INTERVAL": "0.05",
            "WORKER_APP_HELLO": "1" if hello else "0",
            "WORKER_APP_DEPLOY": "1" if deploy else "0",
        }
        output = self.directory / f"worker-{len(self.started)}.out"
        with output.open("wb") as out:
            process = subprocess.Popen(
                [JOBTRAIL, "worker", "--app", APP, "-c", str(concurrency), *args],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append(process)
        return process

    def output(self) -> str:
        """Everything the workers printed, for failure messages."""
        return "\n".join(
            f"--- worker {n} (pid {p.pid}, exit {p.returncode}):\n"
            + (self.directory / f"worker-{n}.out").read_text(errors="replace")[-3000:]
            for n, p in enumerate(self.started)
        )

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


@pytest.fixture
def processes(database_url: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    workers = WorkerProcesses(database_url, tmp_path)
    try:
        yield workers
    finally:
        workers.kill_all()


@pytest.fixture
def app(tracker: Tracker) -> Tracker:
    """The test's own tracker, with the worker app's kinds registered so that it can submit."""
    return register(tracker)


@pytest.fixture
def log(tmp_path: Path) -> str:
    """The file the handlers append their lines to."""
    return str(tmp_path / "runs.log")


def lines(log: str, first_word: str) -> list[list[str]]:
    """The handlers' log lines starting with ``first_word``, split into words."""
    if not Path(log).exists():
        return []
    rows = [line.split() for line in Path(log).read_text().splitlines()]
    return [row for row in rows if row[0] == first_word]


def test_a_job_whose_worker_is_killed_is_rescued_by_another_worker_and_finishes_on_attempt_2(
    app: Tracker, processes: WorkerProcesses, log: str
) -> None:
    job = app.submit(
        "steps", {"log": log, "count": 10, "delay": 0.05, "die_on_attempt": 1, "die_at": 3}
    )
    first, second = processes.start(), processes.start()

    victim = until(
        lambda: next((p for p in (first, second) if p.poll() is not None), None),
        timeout=30,
        what="the worker running the job to kill itself",
    )
    died_at = datetime.now(UTC)
    assert victim is not None
    survivor = second if victim is first else first
    assert victim.returncode == -signal.SIGKILL, processes.output()

    rescued = until(
        lambda: [e for e in app.events(job.id) if e.type == "rescued"],
        timeout=10,
        what="the rescue",
    )
    waited = (rescued[0].at - died_at).total_seconds()
    assert waited <= HEARTBEAT_TIMEOUT + HEARTBEAT_INTERVAL + 0.5, processes.output()

    done = app.wait(job.id, timeout=30)
    assert done.status is Status.SUCCEEDED, processes.output()
    assert done.attempt == 2
    assert done.result == 10
    assert event_types(app, job.id) == ["created", "started", "rescued", "started", "succeeded"]
    assert [row[1:] for row in lines(log, "start")] == [
        [job.id, "1", str(victim.pid)],
        [job.id, "2", str(survivor.pid)],
    ]
    assert survivor.poll() is None


def test_a_job_that_kills_every_worker_ends_failed_as_worker_lost_after_its_attempts(
    app: Tracker, processes: WorkerProcesses, log: str
) -> None:
    job = app.submit("doomed", {"log": log})
    deaths: list[int] = []
    current = processes.start()
    deadline = time.monotonic() + 60
    while not app.get(job.id).terminal:  # a supervisor: restart each worker the job kills
        assert time.monotonic() < deadline, processes.output()
        if current.poll() is not None:
            deaths.append(current.returncode)
            assert len(deaths) <= 2, f"the job went on killing workers\n{processes.output()}"
            current = processes.start()
        time.sleep(0.05)

    done = app.get(job.id)
    assert done.status is Status.FAILED, processes.output()
    assert done.error_message == "worker lost"
    assert done.attempt == 2
    assert deaths == [-signal.SIGKILL, -signal.SIGKILL]
    assert [row[2] for row in lines(log, "start")] == ["1", "2"]
    assert event_types(app, job.id) == ["created", "started", "rescued", "started", "failed"]
    assert current.poll() is None, "the worker that recorded the loss should still be running"


def test_a_healthy_job_longer_than_the_heartbeat_timeout_is_never_rescued(
    app: Tracker, processes: WorkerProcesses, log: str
) -> None:
    job = app.submit("quiet", {"log": log, "seconds": 2 * HEARTBEAT_TIMEOUT})
    processes.start()
    processes.start()

    done = app.wait(job.id, timeout=30)

    assert done.status is Status.SUCCEEDED, processes.output()
    assert done.result == 1
    assert done.attempt == 1
    assert done.duration_seconds is not None
    assert done.duration_seconds >= 2 * HEARTBEAT_TIMEOUT
    assert "rescued" not in event_types(app, job.id)
    assert len(lines(log, "start")) == 1
    assert len(lines(log, "end")) == 1


def test_sigterm_requeues_the_job_at_the_next_item_and_the_worker_exits_in_time(
    app: Tracker, processes: WorkerProcesses, log: str
) -> None:
    job = app.submit("steps", {"log": log, "count": 40, "delay": 0.05})
    worker = processes.start()
    until(
        lambda: (app.get(job.id).items_done or 0) >= 3,
        timeout=30,
        what="three items done",
    )

    signalled = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=GRACE_PERIOD + 5) == 0, processes.output()
    assert time.monotonic() - signalled < GRACE_PERIOD, "it should stop at the next item"

    interrupted = app.get(job.id)
    assert interrupted.status is Status.QUEUED
    assert event_types(app, job.id)[-1] == "interrupted"
    assert app.list(status=Status.RUNNING).total_count == 0
    begun, ended = lines(log, "begin"), lines(log, "end")
    assert len(begun) >= 3
    assert begun == [["begin", step] for _, step in ended], "an item was left half done"

    again = processes.start("--burst")
    assert again.wait(timeout=30) == 0, processes.output()
    done = app.get(job.id)
    assert done.status is Status.SUCCEEDED
    assert done.result == 40
    assert done.attempt == 1
    assert [row[2] for row in lines(log, "start")] == ["1", "1"]
    starts = [e.message for e in app.events(job.id) if e.type == "started"]
    assert starts == ["attempt 1", "attempt 1"]


def test_three_worker_processes_started_together_submit_one_startup_job(
    app: Tracker, processes: WorkerProcesses
) -> None:
    for _ in range(3):
        processes.start(hello=True, deploy=True)
    until(
        lambda: app.list(kind="hello", status=Status.SUCCEEDED).total_count == 4,
        timeout=60,
        what="every worker to start",
    )  # each process's own hello, and the deployment's one
    deployed = app.list(kind="hello", owner="deployment").jobs
    assert len(deployed) == 1, processes.output()
    assert deployed[0].trigger == "startup"
    assert (deployed[0].key or "").startswith("startup:hello:")
    assert len({j.owner for j in app.list(kind="hello").jobs}) == 4


@pytest.mark.timeout(240)
def test_four_worker_processes_run_a_thousand_jobs_each_exactly_once(
    app: Tracker, processes: WorkerProcesses, log: str
) -> None:
    workers = [processes.start(concurrency=2, hello=True, heartbeat_timeout=30) for _ in range(4)]
    until(
        lambda: app.list(kind="hello", status=Status.SUCCEEDED).total_count == 4,
        timeout=60,
        what="every worker to start",
    )

    jobs = app.submit_many("noop", [{"log": log}] * 1000)
    until(
        lambda: app.list(kind="noop", status=Status.SUCCEEDED).total_count == 1000,
        timeout=150,
        poll=0.2,
        what="a thousand jobs to succeed",
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout=GRACE_PERIOD + 5) == 0, processes.output()

    runs = lines(log, "ran")
    executions = Counter(row[1] for row in runs)
    assert len(runs) == 1000
    assert set(executions) == {job.id for job in jobs}
    assert executions.most_common(1)[0][1] == 1
    assert {row[2] for row in runs} == {"1"}
    pids = {row[3] for row in runs}
    assert pids <= {str(w.pid) for w in workers}
    assert len(pids) >= 2, "the jobs should have been shared between processes"
    with app.store.database.engine.connect() as conn:
        starts = sa.select(job_events.c.job_id).where(job_events.c.type == "started")
        twice = conn.execute(starts.group_by(job_events.c.job_id).having(sa.func.count() > 1)).all()
    assert twice == []
    assert app.list(kind="noop", status=list(ACTIVE)).total_count == 0


def test_an_idle_worker_in_another_process_starts_a_job_long_before_its_next_poll(
    processes: WorkerProcesses, app: Tracker, log: str
) -> None:
    # Polls and heartbeats (whose commits wake a worker's idle threads too) a minute apart:
    # the job runs within seconds only if the submit's commit woke the worker (PostgreSQL
    # LISTEN/NOTIFY; SQLite's data_version, read when the log is written), and ``wait``
    # returns only if the worker's commit woke this process in turn.
    processes.start(poll_interval=60, heartbeat_interval=60, heartbeat_timeout=180)
    until(app.workers, 30, what="the worker to register")
    time.sleep(0.5)  # its first claims found nothing: it is idle until the next poll
    for _ in range(3):
        job = app.submit("noop", {"log": log})
        assert app.wait(job.id, timeout=10, poll=60).status is Status.SUCCEEDED, processes.output()


def test_an_idle_postgresql_worker_sends_no_change_notifications(
    processes: WorkerProcesses, app: Tracker, database_url: str, log: str
) -> None:
    # The triggers notify only when jobs rows changed: an idle worker's empty claims must not
    # wake every other idle worker, whose empty claims would wake it again.
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite needs no notifications: its watchers read data_version")
    import psycopg

    processes.start(poll_interval=0.05)
    until(app.workers, 30, what="the worker to register")
    url = sa.make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("LISTEN jobtrail_changes")
        idle = list(conn.notifies(timeout=1.5))
        assert idle == []  # 30 empty claims went by
        # A job due in an hour: its insert notifies once, and the worker it wakes finds nothing
        # to claim. (A due job's claim notifies too, at once: on a busy machine the two arrive
        # in one read.)
        app.submit("noop", {"log": log}, run_after=datetime.now(UTC) + timedelta(hours=1))
        assert len(list(conn.notifies(timeout=5, stop_after=1))) == 1
