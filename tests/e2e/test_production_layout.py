"""The production layout as plain processes: a Celery worker, a jobtrail worker and
`jobtrail serve` on one PostgreSQL, an SSE client seeing every process's writes, and a
PostgreSQL restart in the middle of the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from celery import Celery

import jobtrail
from jobtrail import Status
from tests.apps.celery_app import use_tracker
from tests.apps.handlers import register
from tests.servers import PostgresServer, RedisServer, free_port
from tests.waiting import until, until_answers

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(240)


@dataclass
class Layout:
    """The running processes and what an SSE client saw."""

    url: str
    base: str
    token: str
    tracker: jobtrail.Tracker
    celery: Celery
    password: str
    logs: list[Path]
    seen: dict[str, set[str]] = field(default_factory=dict)

    def printed(self) -> str:
        """Everything the three processes printed so far."""
        return "\n".join(log.read_text(errors="replace") for log in self.logs)


@pytest.fixture
def layout(
    postgres: PostgresServer, redis_server: RedisServer, shared_celery: Celery, tmp_path: Path
) -> Iterator[Layout]:
    name = f"layout_{uuid.uuid4().hex[:12]}"
    # A password in the URL, as in docs/deploy.md (the test server trusts loopback, but the
    # driver is handed the password all the same): it must never be printed.
    password = f"pw-{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name).replace("@", f":{password}@", 1)
    tracker = register(jobtrail.Tracker(url, flush_interval=0.05))
    token = tracker.ops.create_token("ops", None)
    port = free_port()
    env = os.environ | {
        "JOBTRAIL_DATABASE_URL": url,
        "CELERY_TEST_BROKER": redis_server.url(),
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        "JOBTRAIL_POLL_INTERVAL": "0.05",
        "JOBTRAIL_HEARTBEAT_INTERVAL": "0.5",
        "JOBTRAIL_STREAM_POLL_INTERVAL": "0.1",
        "JOBTRAIL_STREAM_AUTH_INTERVAL": "0.5",  # the stream's token is checked in an outage
    }
    commands = [
        [str(BIN / "celery"), "-A", "tests.apps.celery_app", "worker", "--pool", "threads"],
        [str(BIN / "jobtrail"), "worker", "--app", "tests.apps.worker_app:tracker", "-c", "4"],
        [str(BIN / "jobtrail"), "serve", "--no-worker", "--port", str(port)],
    ]
    logs = [tmp_path / f"{n}.log" for n in ("celery", "worker", "serve")]
    processes = [_start(c, env, log) for c, log in zip(commands, logs, strict=True)]
    base = f"http://127.0.0.1:{port}"
    celery = use_tracker(shared_celery, tracker)
    found = Layout(url, base, token, tracker, celery, password, logs)
    stop = threading.Event()
    try:
        until_answers(f"{base}/api/v1/health", 30, what="jobtrail serve")
        follower = threading.Thread(target=_follow, args=(found, stop), daemon=True)
        follower.start()
        yield found
    finally:
        stop.set()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)
        tracker.close()
        postgres.drop_database(name)


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command``, its output (both streams) written to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _follow(layout: Layout, stop: threading.Event) -> None:
    """An SSE client on /stream, recording every status it sees per job (reconnecting)."""
    headers = {"Authorization": f"Bearer {layout.token}"}
    last: str | None = None
    while not stop.is_set():
        if last:
            headers["Last-Event-ID"] = last
        try:
            with httpx.stream(
                "GET", f"{layout.base}/api/v1/stream", headers=headers, timeout=5
            ) as response:
                for line in response.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("id: "):
                        last = line[4:]
                    if line.startswith("data: "):
                        job = json.loads(line[6:])
                        layout.seen.setdefault(job["id"], set()).add(job["status"])
        except httpx.HTTPError:
            stop.wait(0.2)


def test_every_process_writes_reach_one_sse_client(layout: Layout, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    until_answers(f"{layout.base}/api/v1/health", 10, what="jobtrail serve")
    by_celery = layout.celery.send_task(
        "sync_listings", kwargs={"listings": ["a", "b"], "bad": []}
    ).id
    by_worker = layout.tracker.submit("steps", {"log": log, "count": 3, "delay": 0.1}).id
    headers = {"Authorization": f"Bearer {layout.token}"}
    external = httpx.post(
        f"{layout.base}/api/v1/jobs/external", json={"kind": "export"}, headers=headers
    ).json()["id"]
    httpx.patch(
        f"{layout.base}/api/v1/jobs/{external}", json={"status": "succeeded"}, headers=headers
    )
    for job_id in (by_celery, by_worker, external):
        assert layout.tracker.wait(job_id, timeout=60).status is Status.SUCCEEDED
    until(
        lambda: all(
            "succeeded" in layout.seen.get(j, set()) for j in (by_celery, by_worker, external)
        ),
        10,
        what="the SSE client to see every job succeed",
    )
    assert "running" in layout.seen[by_worker]
    assert layout.tracker.get(by_celery).worker != layout.tracker.get(by_worker).worker


def test_a_postgresql_outage_mid_run_loses_no_terminal_state_and_prints_no_password(
    layout: Layout, postgres: PostgresServer, tmp_path: Path
) -> None:
    log = str(tmp_path / "log")
    jobs = [
        layout.tracker.submit("steps", {"log": log, "count": 4, "delay": 0.25}).id for _ in range(8)
    ]
    tasks = [
        layout.celery.send_task("sync_listings", kwargs={"listings": ["x", "y"], "bad": []}).id
        for _ in range(4)
    ]
    until(
        lambda: any(layout.tracker.get(j).status is Status.RUNNING for j in jobs),
        30,
        what="work to be running",
    )
    before = len(layout.printed().splitlines())
    stopped = postgres._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    time.sleep(5)  # the outage of docs/deploy.md's run: every process meets it
    postgres.restart()
    finished = [layout.tracker.wait(j, timeout=120) for j in [*jobs, *tasks]]
    assert [j.status for j in finished] == [Status.SUCCEEDED] * len(finished)
    running = layout.tracker.list(status="running").total_count
    assert running == 0
    printed = layout.printed()
    assert layout.password not in printed
    assert "password=" not in printed
    assert "Traceback" not in printed  # every process, the open stream too, waited it out
    since = len(printed.splitlines()) - before
    assert since < 400, f"{since} lines printed since the outage began"
