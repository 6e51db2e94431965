"""Workers that die or freeze mid-job: real ``jobtrail worker`` processes, real SIGKILL and
SIGSTOP, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from jobtrail import Status, Tracker
from tests.reliability.harness import (
    Processes,
    budget,
    count_rows,
    every_job_ended_once,
    histories,
    lines,
    records,
    scaled,
    wait_until_ended,
)
from tests.waiting import until

KILL_EVERY = 0.8
"""Seconds between kills; the submissions are spread over the same time."""


def pid_of(worker: str | None) -> int | None:
    """The process id in a job's ``worker`` (``host:pid:thread``)."""
    parts = (worker or "").split(":")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class Submitter(threading.Thread):
    """Submits ``total`` short jobs at a steady pace over ``seconds``."""

    def __init__(self, tracker: Tracker, total: int, seconds: float) -> None:
        super().__init__(name="submitter")
        self.tracker = tracker
        self.total = total
        self.pause = seconds / total
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(self.total):
                job = self.tracker.submit("work", {"items": 10, "delay": 0.02})
                self.ids.append(job.id)
                time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc


def kill_a_worker_mid_job(
    tracker: Tracker, processes: Processes, slots: list[subprocess.Popen[bytes]]
) -> bool:
    """SIGKILL one worker process that is running a job right now and start another in its
    place; False if no worker was running a job."""
    alive = {p.pid: n for n, p in enumerate(slots) if p.poll() is None}
    running = tracker.list(kind="work", status=Status.RUNNING, limit=100).jobs
    busy = [pid for pid in (pid_of(job.worker) for job in running) if pid in alive]
    if not busy:
        return False
    victim = slots[alive[random.choice(busy)]]
    victim.kill()
    victim.wait(timeout=10)
    slots[slots.index(victim)] = processes.worker(concurrency=2)
    return True


@pytest.mark.timeout(budget(300))
def test_a_worker_sigkilled_mid_job_twenty_times_under_load_loses_no_job_and_ends_each_once(
    app: Tracker, processes: Processes
) -> None:
    total, kills = scaled(200), scaled(20)
    slots = [processes.worker(concurrency=2), processes.worker(concurrency=2)]
    submitter = Submitter(app, total, kills * KILL_EVERY)
    submitter.start()
    done = 0
    deadline = time.monotonic() + budget(200)
    while done < kills:
        assert time.monotonic() < deadline, f"only {done} kills\n{processes.output()}"
        time.sleep(KILL_EVERY if done else 0.2)
        while not kill_a_worker_mid_job(app, processes, slots):
            assert time.monotonic() < deadline, f"no job to kill\n{processes.output()}"
            time.sleep(0.05)
        done += 1
    submitter.join()
    assert submitter.error is None, repr(submitter.error)
    assert len(submitter.ids) == total

    wait_until_ended(app, submitter.ids, timeout=budget(120))

    assert count_rows(app, "work") == total, "a job was lost or duplicated"
    problems = every_job_ended_once(app, submitter.ids)
    assert problems == [], "\n".join(problems[:20])
    ended = records(app, submitter.ids).values()
    wrong = [
        j.id for j in ended if j.status is Status.SUCCEEDED and j.result["attempt"] != j.attempt
    ]
    assert wrong == [], "a succeeded job's result is not its last attempt's"
    rescued = sum("rescued" in types for types in histories(app, submitter.ids).values())
    assert rescued >= 1, "no kill hit a job"
    print(f"\n{kills} kills, {total} jobs: {rescued} rescued, all ended once")


def test_a_frozen_worker_past_the_heartbeat_timeout_cannot_overwrite_the_rescued_outcome(
    app: Tracker, processes: Processes, log: Path
) -> None:
    frozen = processes.worker(concurrency=2)
    late_finish = app.submit("freeze", {"log": str(log), "hold": 4.0}).id
    late_report = app.submit("freeze", {"log": str(log), "hold": 4.0, "report_late": True}).id
    until(
        lambda: len(lines(log, "start")) == 2,
        timeout=30,
        what="the first worker to start both jobs",
    )
    frozen.send_signal(signal.SIGSTOP)

    rescuer = processes.worker(concurrency=2)
    wait_until_ended(app, [late_finish, late_report], timeout=30)
    decided = records(app, [late_finish, late_report])
    history = {job_id: app.events(job_id) for job_id in decided}
    for job in decided.values():
        assert job.status is Status.SUCCEEDED, processes.output()
        assert job.result == {"attempt": 2, "pid": rescuer.pid}
        assert pid_of(job.worker) == rescuer.pid

    frozen.send_signal(signal.SIGCONT)
    until(
        lambda: {row[1] for row in lines(log, "woke")} == {late_finish, late_report},
        timeout=30,
        what="the frozen handlers to wake",
    )
    until(
        lambda: [late_finish, "1", str(frozen.pid)] in [row[1:] for row in lines(log, "end")],
        timeout=30,
        what="the frozen handler to return (its outcome is then written)",
    )
    # A graceful stop commits whatever the woken worker still had queued.
    frozen.send_signal(signal.SIGTERM)
    assert frozen.wait(timeout=30) == 0, processes.output()

    assert records(app, [late_finish, late_report]) == decided, "a late write landed"
    assert {job_id: app.events(job_id) for job_id in decided} == history
    assert every_job_ended_once(app, decided) == []
