"""PostgreSQL restarted, stopped and its connections killed under load: a private server, a real
``jobtrail serve`` with its worker, a real ``jobtrail worker``, and clients that keep calling."""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import sql

from jobtrail import Status, StoreError, Tracker
from tests.apps.reliability_handlers import register
from tests.reliability.harness import (
    Processes,
    Served,
    budget,
    count_rows,
    every_job_ended_once,
    records,
    scaled,
    wait_until_ended,
)
from tests.servers import PostgresServer, _pg_start, require, start_postgres
from tests.waiting import until

pytestmark = pytest.mark.postgres

CLIENT_TIMEOUT = 10.0
"""Seconds a client waits for an answer; longer is a hang."""
DOWN_SECONDS = 3.0
ROLE = "jobtrail_app"
"""The role of the store whose password must never be printed."""


@dataclass
class Outage:
    """A private PostgreSQL server (restarting the shared one would disturb other tests), a
    migrated database on it, and processes on that database."""

    server: PostgresServer
    url: str
    tracker: Tracker
    processes: Processes

    def terminate_connections(self) -> int:
        """``pg_terminate_backend`` every other connection to the database; how many."""
        with self.server.connect() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'outage' AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)

    def stop(self) -> None:
        done = self.server._pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        done = _pg_start(self.server)
        assert done.returncode == 0, done.stdout + done.stderr
        self.server.wait_ready()


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    server = require("PostgreSQL", start_postgres())
    yield from outage_on(server, server.create_database("outage"), tmp_path)


@pytest.fixture
def password() -> str:
    """A password found nowhere else."""
    return f"pw-{secrets.token_hex(8)}"


@pytest.fixture
def guarded_outage(tmp_path: Path, password: str) -> Iterator[Outage]:
    """``outage`` on a store whose role logs in with ``password`` (in the URL)."""
    server = require("PostgreSQL", start_postgres())
    yield from outage_on(server, with_password(server, "outage", password), tmp_path)


def outage_on(server: PostgresServer, url: str, tmp_path: Path) -> Iterator[Outage]:
    processes = Processes(url, tmp_path)
    try:
        with Tracker(url, flush_interval=0.05) as tracker:
            yield Outage(server, url, register(tracker), processes)
    finally:
        processes.stop_all()
        server.stop()


def with_password(server: PostgresServer, database: str, password: str) -> str:
    """Create ``database``, owned by ``ROLE``, which must log in over TCP with ``password``
    (the others keep trust); the URL of ``database`` as ``ROLE``, password included."""
    with server.connect() as conn:
        role = sql.Identifier(ROLE)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, password))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), role))
    hba = server.datadir / "pg_hba.conf"
    hba.write_text(f"host all {ROLE} {server.host}/32 scram-sha-256\n{hba.read_text()}")
    reloaded = server._pg_ctl("reload")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    return f"postgresql+psycopg://{ROLE}:{password}@{server.host}:{server.port}/{database}"


@dataclass
class Answers:
    """What the API answered during the faults."""

    codes: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    unavailable: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, response: httpx.Response) -> None:
        with self.lock:
            self.codes[response.status_code] += 1
            if response.status_code >= 500 and response.status_code != 503:
                self.problems.append(f"{what}: {response.status_code} {response.text[:300]}")
            if response.status_code == 503:
                self.unavailable += 1
                self._check_unavailable(what, response)

    def _check_unavailable(self, what: str, response: httpx.Response) -> None:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = None
        if not detail:
            self.problems.append(f"{what}: 503 without a detail: {response.text[:300]}")
        if "retry-after" not in response.headers:
            self.problems.append(f"{what}: 503 without Retry-After: {dict(response.headers)}")

    def summary(self) -> list[str]:
        """Each kind of problem once, with how often it happened and its first example."""
        kinds: dict[str, list[str]] = {}
        for problem in self.problems:
            kinds.setdefault(problem.partition(": ")[2][:24], []).append(problem)
        return [f"{len(found)}× {found[0]}" for found in kinds.values()]

    def failed(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.problems.append(f"{what}: {type(exc).__name__}: {exc}")


def get(path: str) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.get(path)


def post(path: str, body: dict[str, Any]) -> Callable[[httpx.Client], httpx.Response]:
    return lambda client: client.post(path, json=body)


class Callers:
    """Clients of the served API and the Python API that keep working while the faults happen:
    each submission has a key and is repeated until it is answered, so none is lost or made
    twice."""

    def __init__(self, outage: Outage, served: Served, token: str) -> None:
        self.outage = outage
        self.served = served
        self.token = token
        self.answers = Answers()
        self.ids: list[str] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._submit_in_python, name="python-submitter"),
            threading.Thread(target=self._submit_over_http, name="http-submitter"),
            *(threading.Thread(target=self._read, name=f"reader-{n}") for n in range(3)),
        ]

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _submit_in_python(self) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"py-{n}"
            while not self.stop.is_set():
                try:
                    job = self.outage.tracker.submit("work", {"items": 5, "delay": 0.01}, key=key)
                    break
                except StoreError:
                    time.sleep(0.1)
            else:
                return
            self.ids.append(job.id)
            n += 1
            time.sleep(0.1)

    def _submit_over_http(self) -> None:
        n = 0
        with self.served.client(self.token, CLIENT_TIMEOUT) as client:
            while not self.stop.is_set():
                key = f"http-{n}"
                body = {"kind": "work", "payload": {"items": 5, "delay": 0.01}, "key": key}
                answer = self._call(client, "POST /jobs", post("/jobs", body))
                if answer is not None:
                    self.ids.append(answer.get("job_id") or answer["id"])
                    n += 1
                time.sleep(0.1)

    def _read(self) -> None:
        with self.served.client(self.token, CLIENT_TIMEOUT) as client:
            while not self.stop.is_set():
                self._call(client, "GET /jobs", get("/jobs?limit=10"))
                if self.ids:
                    job_id = random.choice(self.ids)
                    self._call(client, "GET /jobs/{id}", get(f"/jobs/{job_id}"))
                time.sleep(0.05)

    def _call(
        self,
        client: httpx.Client,
        what: str,
        request: Callable[[httpx.Client], httpx.Response],
    ) -> dict[str, Any] | None:
        """Make one call and note its answer; the JSON body of a success, else None."""
        try:
            response = request(client)
        except httpx.HTTPError as exc:
            self.answers.failed(what, exc)
            return None
        self.answers.note(what, response)
        if response.status_code >= 300:
            return None
        body: dict[str, Any] = response.json()
        return body


def while_down(outage: Outage, served: Served, token: str, answers: Answers) -> None:
    """Stop the server, call the API while it is down, and start it again."""
    outage.stop()
    seen = 0
    deadline = time.monotonic() + DOWN_SECONDS
    with served.client(token, CLIENT_TIMEOUT) as client:
        while time.monotonic() < deadline:
            calls: list[tuple[str, Callable[[], httpx.Response]]] = [
                ("GET /jobs (down)", lambda: client.get("/jobs")),
                ("POST /jobs (down)", lambda: client.post("/jobs", json={"kind": "work"})),
                ("GET /stats (down)", lambda: client.get("/stats")),
            ]
            for what, call in calls:
                try:
                    response = call()
                except httpx.HTTPError as exc:
                    answers.failed(what, exc)
                    continue
                answers.note(what, response)
                seen += response.status_code == 503
                if response.status_code != 503:
                    answers.problems.append(f"{what}: {response.status_code}, not 503")
            health = client.get("/health")
            if health.status_code != 503:
                answers.problems.append(f"GET /health (down): {health.status_code}, not 503")
            time.sleep(0.2)
    outage.start()
    assert seen > 0, "no call was made while the database was down"


@pytest.mark.timeout(budget(240))
def test_postgresql_restarted_and_its_connections_killed_under_load_loses_and_repeats_nothing(
    outage: Outage,
) -> None:
    token = outage.tracker.ops.create_token("ops", None)
    served = outage.processes.serve(JOBTRAIL_RATE_LIMIT="100000/second")
    worker = outage.processes.worker(concurrency=2)
    with Callers(outage, served, token) as callers:
        for _ in range(scaled(2)):
            time.sleep(2)
            for _ in range(5):
                assert outage.terminate_connections() > 0
                time.sleep(1)
            outage.server.restart()
            time.sleep(2)
            outage.server.restart()
            time.sleep(2)
            while_down(outage, served, token, callers.answers)
            time.sleep(2)
    answers = callers.answers
    print(f"\nanswers while faulted: {dict(answers.codes)}; {len(callers.ids)} submitted")
    tracker = outage.tracker
    ids = callers.ids
    assert len(set(ids)) == len(ids), "one submission made two jobs"
    wait_until_ended(tracker, ids, timeout=budget(90))
    assert count_rows(tracker, "work") == len(ids), "a job was lost or made twice"
    problems = every_job_ended_once(tracker, ids)
    assert problems == [], "\n".join(problems[:20]) + outage.processes.output()
    statuses = Counter(job.status for job in records(tracker, ids).values())
    assert statuses == {Status.SUCCEEDED: len(ids)}, outage.processes.output()

    # Both workers reconnected: jobs submitted now run on each of them.
    after = tracker.submit_many("work", [{"items": 20, "delay": 0.02}] * 12)
    wait_until_ended(tracker, [j.id for j in after], timeout=60)
    ran_on = {
        (j.worker or "").split(":")[1] for j in records(tracker, [j.id for j in after]).values()
    }
    assert ran_on == {str(served.process.pid), str(worker.pid)}, outage.processes.output()
    until(lambda: served.process.poll() is None and worker.poll() is None, 1, what="alive")

    # While the database was away the API answered 503 with a detail and Retry-After; never
    # another 5xx, never a hang.
    assert answers.unavailable > 0
    assert answers.summary() == [], "\n".join(answers.summary())


def log_lines(processes: Processes) -> list[list[str]]:
    """The lines each process printed so far."""
    return [log.read_text(errors="replace").splitlines() for log in processes.logs]


def call_while_down(served: Served, token: str, seconds: float) -> list[str]:
    """Call the API now and then for ``seconds``; the answers' texts."""
    texts = []
    deadline = time.monotonic() + seconds
    with served.client(token, CLIENT_TIMEOUT) as client:
        while time.monotonic() < deadline:
            texts += [client.get("/jobs").text, client.get("/health").text]
            time.sleep(0.5)
    return texts


@pytest.mark.timeout(budget(120))
def test_a_postgresql_outage_is_logged_in_a_few_lines_that_never_carry_the_password(
    guarded_outage: Outage, password: str
) -> None:
    outage = guarded_outage
    tracker = outage.tracker
    token = tracker.ops.create_token("ops", None)
    served = outage.processes.serve()
    worker = outage.processes.worker(concurrency=2)
    pids = {served.process.pid, worker.pid}
    until(lambda: {w.pid for w in tracker.workers()} == pids, 60, what="both workers")
    before = [len(lines) for lines in log_lines(outage.processes)]

    outage.stop()
    answers = call_while_down(served, token, 5.0)
    outage.start()
    # Both processes are back: jobs submitted now run, and a few maintenance turns pass.
    then = tracker.submit_many("work", [{"items": 3, "delay": 0.01}] * 4)
    wait_until_ended(tracker, [j.id for j in then], timeout=60)
    time.sleep(2)

    since = [lines[n:] for lines, n in zip(log_lines(outage.processes), before, strict=True)]
    printed = "\n".join(line for lines in since for line in lines)
    leaks = printed.count(password) + printed.count("password=")
    count = sum(len(lines) for lines in since)
    print(f"\n{count} lines since the outage began, {leaks} with a password")
    assert leaks == 0, printed[:20_000]
    assert not any(password in text for text in answers)
    assert "Traceback" not in printed, printed[:20_000]
    assert count < 100, printed[:20_000]
    # Each process said that the database went away, and that it came back.
    for lines in since:
        said = "\n".join(lines)
        assert "database unavailable" in said, said
        assert "database available again" in said, said
