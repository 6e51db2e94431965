"""Races on one job: finish, fail, cancel and PATCH from threads, from processes and over HTTP,
on SQLite and PostgreSQL → exactly one terminal state and one terminal event."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jobtrail import Job, JobtrailError, Status, Tracker
from jobtrail.jobs import NewJob
from tests.apps.racer import apply
from tests.reliability.harness import (
    REPO,
    Processes,
    budget,
    create_token,
    every_job_ended_once,
    records,
    scaled,
    wait_until_ended,
)

APPLIED = "applied"


def external_jobs(tracker: Tracker, count: int) -> list[str]:
    """``count`` running jobs of work that runs elsewhere."""
    return [tracker.add(NewJob(kind="external", status=Status.RUNNING))[0].id for _ in range(count)]


def attempt(change: Callable[[], object]) -> str:
    """``applied``, or the name of the jobtrail error that refused the change."""
    try:
        change()
    except JobtrailError as exc:
        return type(exc).__name__
    return APPLIED


def one_winner(job: Job, answers: dict[str, str]) -> str | None:
    """What is wrong with who won the race for ``job``, or None: of the changes that end a
    job (``succeed``, ``fail``, a ``patch`` with a status), exactly the one its terminal state
    names was applied (none, if a cancel ended it); every refusal is ``IllegalTransition``."""
    winner = {
        Status.SUCCEEDED: "succeed",
        Status.FAILED: "fail",
        Status.PARTIAL: "patch",
        Status.CANCELLED: "cancel",
    }.get(job.status)
    enders = {"succeed", "fail", "patch"} & answers.keys()
    applied = {name for name in enders if answers[name] == APPLIED}
    if applied != ({winner} & enders):
        return f"{job.id} ended {job.status} but the changes applied were {answers}"
    refused = {name: r for name, r in answers.items() if r not in (APPLIED, "IllegalTransition")}
    if refused:
        return f"{job.id}: refused with unexpected errors {refused}"
    return None


@pytest.mark.timeout(budget(120))
def test_finish_fail_cancel_and_report_from_threads_leave_one_terminal_state(
    tracker: Tracker,
) -> None:
    ids = external_jobs(tracker, scaled(100))
    answers: dict[str, dict[str, str]] = {job_id: {} for job_id in ids}
    changes: dict[str, Callable[[str], object]] = {
        "succeed": lambda job_id: apply(tracker, "succeed", job_id),
        "fail": lambda job_id: apply(tracker, "fail", job_id),
        "cancel": lambda job_id: apply(tracker, "cancel", job_id),
        "report": lambda job_id: tracker.report(job_id, {"progress": 50, "message": "report"}),
    }
    for job_id in ids:
        start = threading.Barrier(len(changes))

        def race(name: str, job_id: str = job_id, start: threading.Barrier = start) -> None:
            start.wait()
            answers[job_id][name] = attempt(lambda: changes[name](job_id))

        threads = [threading.Thread(target=race, args=(name,)) for name in changes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert every_job_ended_once(tracker, ids) == []
    ended = records(tracker, ids).values()
    wrong = [one_winner(job, answers[job.id]) for job in ended]
    assert [w for w in wrong if w] == []
    print(f"\nwinners: {Counter(str(job.status) for job in ended)}")


RACER = [sys.executable, "-m", "tests.apps.racer"]
STEP = 0.05
"""Seconds between the jobs the racing processes reach together."""


def racers(
    url: str, ids: list[str], directory: Path, start_at: float
) -> dict[str, subprocess.Popen[str]]:
    """One process per change, each applying it to the n-th job at ``start_at + n·STEP``."""
    listing = directory / "ids.txt"
    listing.write_text("\n".join(ids))
    return {
        action: subprocess.Popen(
            [*RACER, url, action, str(start_at), str(STEP), str(listing)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for action in ("succeed", "fail", "cancel")
    }


@pytest.mark.timeout(budget(180))
def test_finish_fail_cancel_from_processes_and_patch_over_http_leave_one_terminal_state(
    tracker: Tracker, processes: Processes, database_url: str, tmp_path: Path
) -> None:
    # The server's maintenance would fail external jobs that stay silent past the suite's short
    # heartbeat timeout ("worker lost"); this race is about the four writers only.
    served = processes.serve(
        "--no-worker", JOBTRAIL_RATE_LIMIT="100000/second", JOBTRAIL_HEARTBEAT_TIMEOUT="600"
    )
    token = create_token(database_url)
    ids = external_jobs(tracker, scaled(60))
    answers: dict[str, dict[str, str]] = {job_id: {} for job_id in ids}
    start_at = time.time() + 3
    started = racers(database_url, ids, tmp_path, start_at)

    with served.client(token) as client:
        for n, job_id in enumerate(ids):
            time.sleep(max(start_at + n * STEP - time.time(), 0))
            body = {"status": "partial", "result": {"by": "patch"}}
            response = client.patch(f"/jobs/{job_id}", json=body)
            assert response.status_code in (200, 409), response.text
            answers[job_id]["patch"] = (
                APPLIED if response.status_code == 200 else "IllegalTransition"
            )
    # Every racer's pipes are read at once: one left unread would fill and stall its writes.
    with ThreadPoolExecutor(len(started)) as pool:
        outputs = dict(
            zip(
                started,
                pool.map(lambda r: r.communicate(timeout=120), started.values()),
                strict=True,
            )
        )
    for action, racer in started.items():
        out, err = outputs[action]
        assert racer.returncode == 0, err[-3000:]
        for line in out.splitlines():
            answer = json.loads(line)
            answers[answer["id"]][action] = APPLIED if answer["applied"] else answer["error"]

    assert every_job_ended_once(tracker, ids) == []
    ended = records(tracker, ids).values()
    wrong = [one_winner(job, answers[job.id]) for job in ended]
    assert [w for w in wrong if w] == []
    print(f"\nwinners: {Counter(str(job.status) for job in ended)}")


@pytest.mark.timeout(budget(120))
def test_a_worker_run_job_ends_by_its_handler_or_a_cancel_never_by_a_patch(
    app: Tracker, processes: Processes, database_url: str
) -> None:
    served = processes.serve("--no-worker", JOBTRAIL_RATE_LIMIT="100000/second")
    token = create_token(database_url)
    processes.worker(concurrency=4)
    t0 = time.time() + 2
    jobs = [app.submit("race", {"until": t0 + 0.25 * n}) for n in range(scaled(12))]
    answers: dict[str, dict[str, str]] = {job.id: {} for job in jobs}

    def race(job: Job, name: str, change: Callable[[], object]) -> None:
        time.sleep(max(job.payload["until"] + random.uniform(-0.15, 0.02) - time.time(), 0))
        answers[job.id][name] = attempt(change)

    def patch(job_id: str) -> None:
        with served.client(token) as client:
            response = client.patch(f"/jobs/{job_id}", json={"status": "failed"})
        if response.status_code != 200:
            raise JobtrailError(f"PATCH answered {response.status_code}: {response.text}")

    threads = []
    for job in jobs:
        for name, change in [
            ("cancel", lambda job_id=job.id: app.cancel(job_id)),
            ("report", lambda job_id=job.id: app.report(job_id, {}, Status.FAILED)),
            ("patch", lambda job_id=job.id: patch(job_id)),
        ]:
            threads.append(threading.Thread(target=race, args=(job, name, change)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    ids = [job.id for job in jobs]
    wait_until_ended(app, ids, timeout=30)
    assert every_job_ended_once(app, ids) == [], processes.output()
    ended = records(app, ids)
    outcomes = {job_id: (job.status, job.result) for job_id, job in ended.items()}
    wrong = {
        job_id: (outcome, answers[job_id])
        for job_id, outcome in outcomes.items()
        if outcome not in [(Status.SUCCEEDED, {"by": "handler"}), (Status.CANCELLED, None)]
    }
    assert wrong == {}, "a PATCH or report overwrote what the worker decided"
    applied = {job_id: a for job_id, a in answers.items() if APPLIED in (a["patch"], a["report"])}
    assert applied == {}, "a status change was accepted for a job a worker runs"
    print(f"\noutcomes: {sorted(str(o[0]) for o in outcomes.values())}")
