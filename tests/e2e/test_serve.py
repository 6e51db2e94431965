"""The served API: the real ``jobtrail serve`` in a subprocess on a free loopback port, spoken
to over HTTP with httpx, with tokens made by the real ``jobtrail tokens`` command."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from jobtrail import Status, Tracker
from jobtrail.jobs import NewJob
from tests.apps.api_handlers import register
from tests.servers import RedisServer, free_port
from tests.waiting import until, until_answers

REPO = Path(__file__).resolve().parents[2]
JOBTRAIL = str(Path(sys.executable).parent / "jobtrail")
APP = "tests.apps.api_app:tracker"
SHUTDOWN_TIMEOUT = 10.0

Json = dict[str, Any]


def command_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a ``jobtrail`` command: this store, quick polls, and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    return env | {
        "JOBTRAIL_DATABASE_URL": database_url,
        "JOBTRAIL_POLL_INTERVAL": "0.05",
        "JOBTRAIL_FLUSH_INTERVAL": "0.05",
        **settings,
    }


def jobtrail(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``jobtrail`` command to its end."""
    return subprocess.run(
        [JOBTRAIL, *args],
        cwd=REPO,
        env=command_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_token(database_url: str, *options: str) -> str:
    """``jobtrail tokens create`` prints the new token and nothing else on stdout."""
    done = jobtrail(database_url, "tokens", "create", *options)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token
    assert "\n" not in token
    return token


@dataclass
class Server:
    """One ``jobtrail serve`` process and where its output goes."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, token: str | None = None) -> httpx.Client:
        """A client of ``/api/v1``, as ``token`` (or without one)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1", headers=headers, timeout=httpx.Timeout(10.0)
        )

    def terminate(self, timeout: float = SHUTDOWN_TIMEOUT) -> int | None:
        """SIGTERM, then the exit code, or None if it is still running after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class Servers:
    """Starts ``jobtrail serve`` processes on one store; SIGTERMs them at the end and checks
    that each one shut down gracefully."""

    def __init__(self, database_url: str, directory: Path) -> None:
        self.database_url = database_url
        self.directory = directory
        self.started: list[Server] = []

    def start(self, *options: str, **settings: str) -> Server:
        """Serve the test app on a free loopback port and wait until ``/health`` answers."""
        port = free_port()
        log = self.directory / f"serve-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [JOBTRAIL, "serve", "--app", APP, "--port", str(port), *options],
                cwd=REPO,
                env=command_env(self.database_url, **settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(process, f"http://127.0.0.1:{port}", log)
        self.started.append(server)

        def alive() -> None:
            assert process.poll() is None, f"serve exited {process.returncode}:\n{server.output()}"

        until_answers(
            f"{server.base_url}/api/v1/health", what="jobtrail serve to answer /health", alive=alive
        )
        return server

    def stop_all(self) -> None:
        problems = []
        for server in self.started:
            already = server.process.returncode is not None
            code = server.terminate()
            if code is None:
                server.process.kill()
                server.process.wait()
                problems.append(f"still running after SIGTERM:\n{server.output()[-3000:]}")
            elif not already and code not in (0, -signal.SIGTERM):
                problems.append(f"exit {code} after SIGTERM:\n{server.output()[-3000:]}")
            elif not already and "Application shutdown complete" not in server.output():
                problems.append(f"no graceful shutdown:\n{server.output()[-3000:]}")
        assert problems == []


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[Servers]:
    """``jobtrail serve`` on the test's store (SQLite file and PostgreSQL)."""
    started = Servers(database_url, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def sqlite_servers(tmp_path: Path) -> Iterator[Servers]:
    """``jobtrail serve`` on a SQLite file, for behaviour that does not depend on the store."""
    started = Servers(f"sqlite:///{tmp_path / 'served.db'}", tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


# -- Server-Sent Events ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sse:
    """One Server-Sent Event."""

    id: str | None
    event: str | None
    data: str

    def job(self) -> Json:
        job: Json = json.loads(self.data)
        return job


def sse_events(response: httpx.Response) -> Iterator[Sse]:
    """The events of a ``text/event-stream`` response as they arrive (comments skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield Sse(fields.get("id"), fields.get("event"), "\n".join(data))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value


def until_job(
    events: Iterator[Sse], matches: Callable[[Json], bool], timeout: float = 10.0
) -> tuple[Json, list[Json]]:
    """Read events until one carries a job that ``matches``; return it and every job before it.

    Each read is bounded by the client's read timeout; the whole wait by ``timeout``."""
    deadline = time.monotonic() + timeout
    seen: list[Json] = []
    for event in events:
        assert event.event == "job"
        job = event.job()
        assert event.id == job["updated_at"] or datetime.fromisoformat(
            event.id or ""
        ) == datetime.fromisoformat(job["updated_at"])
        if matches(job):
            return job, seen
        seen.append(job)
        assert time.monotonic() < deadline, f"no matching job within {timeout} s; saw {seen}"
    raise AssertionError(f"the stream ended before a matching job; saw {seen}")


WRITER = """
import sys
from jobtrail import Tracker

with Tracker(sys.argv[1]) as tracker, tracker.track("probe", owner="A") as ctx:
    print(ctx.job_id, flush=True)
    sys.stdin.readline()
    ctx.progress(50, "halfway")
    ctx.flush()
    print("written", flush=True)
    sys.stdin.readline()
"""
"""Another process tracking a job: it prints the job's id, writes progress on the first input
line and ends the job (succeeded) on the second."""


def read_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no output from the writer within {timeout} s"
    return process.stdout.readline().strip()


def send_line(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


# -- jobs -----------------------------------------------------------------------------------


def test_the_served_worker_runs_a_job_submitted_over_http(
    servers: Servers, database_url: str
) -> None:
    server = servers.start()
    admin = create_token(database_url, "--name", "ops")
    listed = jobtrail(database_url, "tokens", "ls")
    assert listed.stdout.split("\t")[:3] == ["ops", "admin", "live"]

    with server.client(admin) as client:
        body = {"kind": "greet", "payload": {"name": "Ada"}, "owner": "A", "key": "greet-1"}
        response = client.post("/jobs", json=body)
        assert response.status_code == 202, response.text
        submitted = response.json()
        job_id = submitted["job_id"]
        assert submitted["status_url"] == f"{server.base_url}/api/v1/jobs/{job_id}"

        def finished() -> Json:
            job: Json = client.get(submitted["status_url"]).json()
            return job if job["status"] in ("succeeded", "failed") else {}

        job = until(finished, 20, what="the served worker to run the job")
        assert job["status"] == "succeeded"
        assert job["result"] == {"greeting": "hello Ada"}
        assert job["worker"] is not None
        assert str(server.process.pid) in job["worker"]
        progress = client.get(f"/jobs/{job_id}/progress").json()
        assert (progress["status"], progress["progress"]) == ("succeeded", 100.0)
        types = [e["type"] for e in client.get(f"/jobs/{job_id}/events").json()["events"]]
        assert types[0] == "created"
        assert "started" in types
        assert types[-1] == "succeeded"

        again = client.post("/jobs", json=body)
        assert again.status_code == 200
        assert again.json()["id"] == job_id
        unknown = client.post("/jobs", json={"kind": "nope"})
        assert unknown.status_code == 422
        assert "nope" in unknown.json()["detail"]
        misfit = client.post("/jobs", json={"kind": "greet", "payload": {"nom": "x"}})
        assert misfit.status_code == 422
        assert "greet" in misfit.json()["detail"]

        metrics = client.get("/metrics").text
        assert 'jobtrail_jobs_finished_total{kind="greet",status="succeeded"} 1.0' in metrics
        assert 'jobtrail_job_duration_seconds_count{kind="greet"} 1.0' in metrics


def test_an_external_job_reports_over_http_until_it_ends(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--no-worker")
    alice = create_token(database_url, "--owner", "A", "--name", "alice")
    with server.client(alice) as client:
        response = client.post("/jobs/external", json={"kind": "export", "items_total": 4})
        assert response.status_code == 201, response.text
        job = response.json()
        assert (job["owner"], job["status"], job["trigger"]) == ("A", "running", "external")
        url = f"/jobs/{job['id']}"

        reported = client.patch(url, json={"message": "rows", "items_succeeded": 1})
        assert reported.status_code == 200, reported.text
        assert (reported.json()["items_done"], reported.json()["progress"]) == (1, 25.0)
        reported = client.patch(url, json={"items_succeeded": 2, "items_failed": 1})
        assert (reported.json()["items_done"], reported.json()["progress"]) == (3, 75.0)
        progress = client.get(f"{url}/progress").json()
        assert (progress["message"], progress["items_failed"]) == ("rows", 1)

        ended = client.patch(url, json={"status": "partial", "result": {"rows": 2}})
        assert ended.status_code == 200, ended.text
        assert (ended.json()["status"], ended.json()["result"]) == ("partial", {"rows": 2})
        late = client.patch(url, json={"progress": 99})
        assert late.status_code == 409
        assert client.get(url).json()["progress"] == 75.0

        queued = client.post("/jobs/external", json={"kind": "export", "status": "queued"})
        illegal = client.patch(f"/jobs/{queued.json()['id']}", json={"status": "succeeded"})
        assert illegal.status_code == 409
        assert client.get(f"/jobs/{queued.json()['id']}").json()["status"] == "queued"


def test_owner_tokens_from_the_cli_see_only_their_jobs_and_revocation_is_immediate(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--no-worker")
    alice = create_token(database_url, "--owner", "A", "--name", "alice")
    bob = create_token(database_url, "--owner", "B", "--name", "bob")
    with server.client(alice) as as_alice, server.client(bob) as as_bob:
        mine = as_alice.post("/jobs/external", json={"kind": "export"}).json()["id"]
        theirs = as_bob.post("/jobs/external", json={"kind": "export"}).json()["id"]
        assert [j["id"] for j in as_alice.get("/jobs").json()["jobs"]] == [mine]
        assert as_alice.get(f"/jobs/{theirs}").status_code == 404
        assert as_alice.post(f"/jobs/{theirs}/cancel").status_code == 404
        assert as_alice.get("/stats").json()["total_jobs"] == 1
        cancelled = as_alice.post(f"/jobs/{mine}/cancel")
        assert cancelled.status_code == 202

        revoked = jobtrail(database_url, "tokens", "revoke", "alice")
        assert revoked.returncode == 0, revoked.stderr
        refused = as_alice.get("/jobs")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert as_bob.get("/jobs").status_code == 200
        states = dict(
            line.split("\t")[::2]
            for line in jobtrail(database_url, "tokens", "ls").stdout.splitlines()
        )
        assert states == {"alice": "revoked", "bob": "live"}

    with server.client(create_token(database_url)) as as_admin:
        events = as_admin.get(f"/jobs/{mine}/events").json()
    assert [e["actor"] for e in events["events"] if e["type"] == "cancel_requested"] == ["alice"]

    with server.client() as anonymous:
        assert anonymous.get("/jobs").status_code == 401
        assert anonymous.get("/health").json()["status"] == "ok"
    with server.client("jt_forged-token") as forger:
        assert forger.get("/jobs").status_code == 401


def test_the_stream_of_a_job_shows_a_write_from_another_process_within_a_second(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--no-worker")
    follow_a_writer_process(server, database_url)


def follow_a_writer_process(server: Server, database_url: str) -> None:
    """Follow, as an owner's token, the stream of a job another process writes (``WRITER``)."""
    alice = create_token(database_url, "--owner", "A")
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, database_url],
        cwd=REPO,
        env=command_env(database_url),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        try:
            follow_the_writer(server, alice, writer)
            assert writer.wait(20) == 0
        finally:
            writer.kill()


def follow_the_writer(server: Server, token: str, writer: subprocess.Popen[str]) -> None:
    job_id = read_line(writer)
    timeout = httpx.Timeout(10.0, read=5.0)
    with (
        server.client(token) as client,
        client.stream("GET", f"/jobs/{job_id}/stream", timeout=timeout) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        first, _ = until_job(events, lambda job: True)
        assert (first["id"], first["status"], first["progress"]) == (job_id, "running", 0)

        asked = time.monotonic()
        send_line(writer, "write")
        halfway, _ = until_job(events, lambda job: job["message"] == "halfway")
        latency = time.monotonic() - asked
        assert halfway["progress"] == 50
        assert latency < 1.0, f"the update took {latency:.2f} s to arrive"
        assert read_line(writer) == "written"

        send_line(writer, "finish")
        last, _ = until_job(events, lambda job: job["status"] != "running")
        assert last["status"] == "succeeded"
        assert list(events) == []  # and the stream has ended


def test_the_stream_of_all_jobs_shows_an_admin_every_job_and_an_owner_only_its_own(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--no-worker")
    admin = create_token(database_url, "--name", "root")
    alice = create_token(database_url, "--owner", "A", "--name", "alice")
    timeout = httpx.Timeout(10.0, read=5.0)
    with (
        server.client(admin) as as_admin,
        server.client(alice) as as_alice,
        as_admin.stream("GET", "/stream", timeout=timeout) as everything,
        as_alice.stream("GET", "/stream", timeout=timeout) as own,
    ):
        assert (everything.status_code, own.status_code) == (200, 200)
        a1 = as_alice.post("/jobs/external", json={"kind": "export"}).json()["id"]
        b1 = as_admin.post("/jobs/external", json={"kind": "export", "owner": "B"}).json()["id"]
        a2 = as_admin.post("/jobs/external", json={"kind": "import", "owner": "A"}).json()["id"]
        assert as_admin.patch(f"/jobs/{b1}", json={"message": "b-step"}).status_code == 200
        assert as_alice.patch(f"/jobs/{a1}", json={"message": "a-step"}).status_code == 200

        last, before = until_job(sse_events(everything), lambda j: j["message"] == "a-step")
        seen = {(j["id"], j["message"]) for j in [*before, last]}
        assert {(a1, "a-step"), (b1, "b-step"), (a2, None)} <= seen

        last, before = until_job(sse_events(own), lambda j: j["message"] == "a-step")
        assert last["id"] == a1
        assert {j["owner"] for j in before} == {"A"}
        assert a2 in {j["id"] for j in before}
        assert b1 not in {j["id"] for j in before}


def test_the_stream_of_all_jobs_resumes_from_last_event_id(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--no-worker")
    now = datetime.now(UTC)
    # Changes made while no client was listening: written with clocks set in the past.
    with (
        Tracker(database_url, clock=lambda: now - timedelta(minutes=10)) as ten_minutes_ago,
        Tracker(database_url, clock=lambda: now - timedelta(minutes=30)) as half_an_hour_ago,
    ):
        admin = ten_minutes_ago.ops.create_token("root", None)
        missed, _ = ten_minutes_ago.add(NewJob(kind="offline", status=Status.RUNNING))
        older, _ = half_an_hour_ago.add(NewJob(kind="offline", status=Status.RUNNING))
    timeout = httpx.Timeout(10.0, read=5.0)
    with server.client(admin) as client:
        sentinel = client.post("/jobs/external", json={"kind": "sentinel"}).json()["id"]
        with client.stream("GET", "/stream", timeout=timeout) as fresh:
            client.patch(f"/jobs/{sentinel}", json={"message": "one"})
            _, before = until_job(sse_events(fresh), lambda j: j["message"] == "one")
            assert missed.id not in {j["id"] for j in before}

        resume_from = (missed.updated_at - timedelta(minutes=1)).isoformat()
        with client.stream(
            "GET", "/stream", headers={"Last-Event-ID": resume_from}, timeout=timeout
        ) as resumed:
            client.patch(f"/jobs/{sentinel}", json={"message": "two"})
            last, before = until_job(sse_events(resumed), lambda j: j["message"] == "two")
    # The sentinel arrives as "one" then "two", or only as "two" when the stream first reads
    # it after the second change (a stream sends each job as it is when read).
    ids = [j["id"] for j in [*before, last]]
    assert missed.id in ids
    assert older.id not in ids
    assert ids.index(missed.id) < ids.index(sentinel)


def test_sigterm_stops_the_server_while_a_client_follows_the_stream(
    sqlite_servers: Servers,
) -> None:
    server = sqlite_servers.start("--no-auth")
    with server.client() as client, client.stream("GET", "/stream") as response:
        assert response.status_code == 200
        code = server.terminate()
    assert code is not None, (
        f"still running {SHUTDOWN_TIMEOUT:g} s after SIGTERM while a client followed /stream:\n"
        + server.output()[-1500:]
    )
    assert code in (0, -signal.SIGTERM)


# -- limits, bad input, modes ---------------------------------------------------------------


def test_body_and_rate_limits_come_from_the_environment(sqlite_servers: Servers) -> None:
    server = sqlite_servers.start(
        "--no-worker", JOBTRAIL_MAX_BODY_BYTES="1024", JOBTRAIL_RATE_LIMIT="5/second"
    )
    with Tracker(sqlite_servers.database_url) as local:
        alice = local.ops.create_token("alice", "A")
        bob = local.ops.create_token("bob", "B")
    with server.client(alice) as as_alice, server.client(bob) as as_bob:
        big = as_bob.post("/jobs/external", json={"kind": "export", "message": "x" * 1100})
        assert big.status_code == 413
        assert "1024" in big.json()["detail"]

        answers = [as_alice.get("/jobs") for _ in range(6)]
        assert [r.status_code for r in answers[:5]] == [200] * 5
        throttled = answers[5]
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        assert as_bob.get("/jobs").status_code == 200


def raw_status(base_url: str, target: str, token: str) -> int:
    """Send ``GET target`` exactly as written (no client-side normalisation of the path)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n"
        )
        connection.sendall(request.encode("latin-1"))
        head = connection.recv(64).decode("latin-1")
    return int(head.split(" ")[1])


def test_path_tricks_sent_verbatim_never_answer_5xx(sqlite_servers: Servers) -> None:
    server = sqlite_servers.start("--no-worker")
    admin = create_token(sqlite_servers.database_url)
    targets = [
        "/api/v1/jobs/../../etc/passwd",
        "/api/v1/jobs/..%2F..%2Fetc",
        "/api/v1/jobs/%2e%2e/%2e%2e/etc",
        "/api/v1/jobs/a%00b",
        "/api/v1/jobs/%ff",
        "/api/v1/jobs//events",
        "/api/v1/jobs/x/../../stats",
        "/api/v1//jobs",
        "/api/v1/jobs?limit=1&limit=0",
        "/api/v1/jobs/" + "x" * 5000,
    ]
    answers = {target: raw_status(server.base_url, target, admin) for target in targets}
    assert {t: code for t, code in answers.items() if not 200 <= code < 500} == {}
    assert raw_status(server.base_url, "/api/v1/jobs", admin) == 200


def test_no_auth_is_refused_on_a_public_address(tmp_path: Path) -> None:
    done = subprocess.run(
        [JOBTRAIL, "serve", "--app", APP, "--no-auth", "--host", "0.0.0.0", "--port", "1"],
        cwd=REPO,
        env=command_env(f"sqlite:///{tmp_path / 'refused.db'}"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "--no-auth" in done.stderr
    assert "loopback" in done.stderr


def test_no_auth_on_loopback_needs_no_token_and_warns_loudly(sqlite_servers: Servers) -> None:
    server = sqlite_servers.start("--no-auth")
    with server.client() as anonymous:
        created = anonymous.post("/jobs/external", json={"kind": "export", "owner": "A"})
        assert created.status_code == 201, created.text
        assert anonymous.get("/jobs").json()["total_count"] == 1
        submitted = anonymous.post("/jobs", json={"kind": "greet", "payload": {"name": "x"}})
        assert submitted.status_code == 202
    warning = next(line for line in server.output().splitlines() if "--no-auth" in line)
    assert warning.startswith("WARNING: authentication is OFF")
    assert "every job" in warning


# -- streams: cleanup, caps, revocation, origins, logs --------------------------------------


def open_streams(server: Server, admin: str) -> float:
    """The ``jobtrail_open_streams`` gauge of ``server``."""
    with server.client(admin) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    [line] = [x for x in response.text.splitlines() if x.startswith("jobtrail_open_streams ")]
    return float(line.split()[1])


def websocket(server: Server, query: str = "", **headers: str) -> ClientConnection:
    """A WebSocket client of ``/api/v1/ws`` (``query`` without the ``?``). It stops reading the
    socket, keep-alive pongs included, while 16 messages wait unread."""
    url = ws_url(server, query)
    return connect(url, additional_headers=headers, open_timeout=10, close_timeout=2)


def unbounded_websocket(server: Server, **headers: str) -> ClientConnection:
    """``websocket`` that buffers every message unread, and so never stops reading the socket
    (its keep-alive pongs included) while the test reads elsewhere."""
    url = ws_url(server, "")
    return connect(
        url, additional_headers=headers, open_timeout=10, close_timeout=2, max_queue=None
    )


def ws_url(server: Server, query: str) -> str:
    """The URL of ``/api/v1/ws`` with ``query`` (without the ``?``)."""
    return (
        server.base_url.replace("http://", "ws://") + "/api/v1/ws" + (f"?{query}" if query else "")
    )


def closed_with(connection: ClientConnection, timeout: float = 10.0) -> int | None:
    """The close code the server ends ``connection`` with (messages before it are skipped;
    ``TimeoutError`` if it stays open ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            connection.recv(timeout=max(deadline - time.monotonic(), 0.01))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def test_websocket_clients_that_leave_release_their_stream_and_streams_are_capped(
    sqlite_servers: Servers,
) -> None:
    server = sqlite_servers.start("--no-worker", JOBTRAIL_MAX_STREAMS_PER_CALLER="3")
    admin = create_token(sqlite_servers.database_url, "--name", "root")
    alice = create_token(sqlite_servers.database_url, "--owner", "A", "--name", "alice")
    bearer = {"Authorization": f"Bearer {alice}"}
    for _ in range(30):  # a filter that never matches: the server never sends them anything
        with websocket(server, "kind=never", **bearer):
            pass
    until(lambda: open_streams(server, admin) == 0, 10, what="every closed socket to be released")

    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(websocket(server, "kind=never", **bearer))
        until(lambda: open_streams(server, admin) == 3, 10, what="three open sockets")
        with websocket(server, "kind=never", **bearer) as fourth:
            assert closed_with(fourth) == 4429
        with server.client(alice) as client:
            refused = client.get("/stream")
            assert refused.status_code == 429
            assert "streams" in refused.json()["detail"]
            assert int(refused.headers["retry-after"]) >= 1
        with server.client(admin) as other, other.stream("GET", "/stream") as own:
            assert own.status_code == 200
    until(lambda: open_streams(server, admin) == 0, 10, what="the held sockets to be released")
    with server.client(alice) as client, client.stream("GET", "/stream") as again:
        assert again.status_code == 200


def test_revoking_a_token_ends_its_open_streams_within_a_few_intervals(
    sqlite_servers: Servers,
) -> None:
    server = sqlite_servers.start("--no-worker", JOBTRAIL_STREAM_AUTH_INTERVAL="0.2")
    database_url = sqlite_servers.database_url
    alice = create_token(database_url, "--owner", "A", "--name", "alice")
    bob = create_token(database_url, "--owner", "B", "--name", "bob")
    timeout = httpx.Timeout(10.0, read=5.0)
    with server.client(alice) as client:
        job = client.post("/jobs/external", json={"kind": "export"}).json()["id"]
    with (
        server.client(alice) as as_alice,
        server.client(bob) as as_bob,
        as_alice.stream("GET", "/stream", timeout=timeout) as everything,
        as_alice.stream("GET", f"/jobs/{job}/stream", timeout=timeout) as one,
        as_bob.stream("GET", "/stream", timeout=timeout) as bobs,
        websocket(server, f"token={alice}") as alices_socket,
    ):
        assert (everything.status_code, one.status_code) == (200, 200)
        revoked = jobtrail(database_url, "tokens", "revoke", "alice")
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        # the streams end (after what was there to send) ...
        assert {e.job()["id"] for e in sse_events(everything)} <= {job}
        assert [e.job()["id"] for e in sse_events(one)] == [job]
        assert closed_with(alices_socket) == 4401  # ... and the socket is closed
        assert time.monotonic() - started < 5.0
        assert as_bob.post("/jobs/external", json={"kind": "export"}).status_code == 201
        still, _ = until_job(sse_events(bobs), lambda j: j["owner"] == "B")
        assert still["kind"] == "export"


def test_a_websocket_with_the_cookie_opens_only_from_the_servers_own_pages(
    sqlite_servers: Servers,
) -> None:
    server = sqlite_servers.start("--no-worker")
    admin = create_token(sqlite_servers.database_url)
    cookie = {"Cookie": f"jobtrail_token={admin}"}
    elsewhere = server.base_url.rsplit(":", 1)[0] + f":{free_port()}"
    for foreign in ({"Origin": elsewhere}, {"Origin": "null"}, {}):
        with pytest.raises(InvalidStatus) as refused, websocket(server, **cookie, **foreign):
            pass
        assert refused.value.response.status_code == 403, foreign
    with websocket(server, **cookie, Origin=server.base_url) as own:
        with server.client(admin) as client:
            job = client.post("/jobs/external", json={"kind": "export"}).json()["id"]
        assert json.loads(own.recv(timeout=10))["id"] == job
    with websocket(server, **{"Authorization": f"Bearer {admin}", "Origin": elsewhere}):
        pass  # a bearer token is no ambient credential: no origin needed


def test_the_access_log_never_shows_a_websocket_token(sqlite_servers: Servers) -> None:
    server = sqlite_servers.start("--no-worker")
    admin = create_token(sqlite_servers.database_url)
    with websocket(server, f"kind=export&token={admin}"):
        pass
    with websocket(server, f"%74oken={admin}"):  # the server decodes the name: still a token
        pass
    with pytest.raises(InvalidStatus), websocket(server, "token=jt_guessed"):
        pass
    with server.client(admin) as client:
        assert client.get("/jobs", params={"token": admin}).status_code == 200

    def logged() -> str:
        output = server.output()
        return output if output.count("oken=[redacted]") >= 4 else ""

    output = until(logged, 10, what="the requests to be logged")
    assert admin not in output
    assert "jt_guessed" not in output
    assert "kind=export&token=[redacted]" in output
    assert "?%74oken=[redacted]" in output


def test_metrics_need_an_admin_token_unless_made_public(sqlite_servers: Servers) -> None:
    guarded = sqlite_servers.start("--no-worker")
    admin = create_token(sqlite_servers.database_url)
    alice = create_token(sqlite_servers.database_url, "--owner", "A", "--name", "alice")
    with guarded.client() as anonymous, guarded.client(alice) as owner:
        assert anonymous.get("/metrics").status_code == 401
        forbidden = owner.get("/metrics")
        assert forbidden.status_code == 403
        assert "admin" in forbidden.json()["detail"]
        assert "jobtrail_" not in forbidden.text
    with guarded.client(admin) as as_admin:
        assert "jobtrail_open_streams" in as_admin.get("/metrics").text
    public = sqlite_servers.start("--no-worker", JOBTRAIL_METRICS_PUBLIC="true")
    with public.client() as scraper:
        scraped = scraper.get("/metrics")
        assert scraped.status_code == 200
        assert "jobtrail_open_streams" in scraped.text


def test_a_stream_is_woken_by_another_processs_commit_not_by_its_poll(
    servers: Servers, database_url: str
) -> None:
    # A poll of a minute: an update that arrives within a second came from the store's
    # change notifications (PostgreSQL LISTEN, SQLite's data_version), not from polling.
    server = servers.start("--no-worker", JOBTRAIL_STREAM_POLL_INTERVAL="60")
    follow_a_writer_process(server, database_url)


BURST = 1200
"""Jobs changed at once: more than a page of the streams' change feed (500), twice over."""


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst_seen(arriving: Iterator[Json], ids: set[str], status: str) -> list[Json]:
    """Read jobs until every one of ``ids`` arrived in ``status``; every job read."""
    deadline = time.monotonic() + 60
    missing, read = set(ids), []
    while missing:
        assert time.monotonic() < deadline, f"{len(missing)} of {len(ids)} never arrived"
        job = next(arriving)
        read.append(job)
        if job["status"] == status:
            missing.discard(job["id"])
    return read


def test_streams_deliver_every_change_of_bursts_larger_than_a_page_then_rest(
    servers: Servers, database_url: str
) -> None:
    # The test is the one writer: the server's queue watch (every heartbeat interval, 10 s by
    # default) would park the queued burst whenever a slow run reached it, a second writer
    # whose commits interleave with the test's (tests/reliability/test_load.py has that case).
    server = servers.start("--no-worker", JOBTRAIL_HEARTBEAT_INTERVAL="600")
    admin = create_token(database_url, "--name", "root")
    timeout = httpx.Timeout(10.0, read=30.0)
    with (
        server.client(admin) as client,
        client.stream("GET", "/stream", timeout=timeout) as stream,
        # Unbounded: while the test reads the SSE stream, the socket buffers the burst and still
        # reads its keep-alive pongs (on a busy machine that takes longer than a ping timeout).
        unbounded_websocket(server, Authorization=f"Bearer {admin}") as socket,
        Tracker(database_url) as tracker,
    ):
        register(tracker)
        events = (event.job() for event in sse_events(stream))
        messages = (json.loads(socket.recv(timeout=30)) for _ in iter(int, 1))
        ids = {job.id for job in tracker.submit_many("greet", [{"name": "x"}] * BURST)}
        queued = [burst_seen(events, ids, "queued"), burst_seen(messages, ids, "queued")]
        for chunk in (sorted(ids)[:1000], sorted(ids)[1000:]):  # a bulk action takes 1,000
            assert len(tracker.bulk("cancel", chunk, actor="ops").done) == len(chunk)
        cancelled = [burst_seen(events, ids, "cancelled"), burst_seen(messages, ids, "cancelled")]

        for read in [*queued, *cancelled]:  # in order of change, each change once
            changes = [(j["updated_at"], j["id"]) for j in read]
            assert changes == sorted(changes)
            assert len(set(changes)) == len(changes)
        # Then the streams wait for the next commit: no re-reading of the burst.
        before = cpu_seconds(server.process.pid)
        time.sleep(2.0)
        spent = cpu_seconds(server.process.pid) - before
        assert spent < 0.5, f"the server used {spent:.2f} CPU-seconds in 2 s of quiet"


def test_serve_without_a_worker_says_it_runs_only_maintenance(sqlite_servers: Servers) -> None:
    server = sqlite_servers.start("--no-worker")
    until(lambda: "maintenance started" in server.output(), 10, what="the start to be logged")
    assert "worker started" not in server.output()


def test_several_http_processes_share_the_rate_limits_kept_in_redis(
    sqlite_servers: Servers, redis_server: RedisServer
) -> None:
    server = sqlite_servers.start(
        "--no-worker",
        "--workers",
        "2",
        JOBTRAIL_RATELIMIT_STORAGE_URL=redis_server.url(7),
        JOBTRAIL_AUTH_RATE_LIMIT="10/minute",
    )
    answers: Counter[int] = Counter()
    for n in range(30):  # a connection each: the kernel spreads them over both processes
        with server.client(f"jt_wrong{n}") as client:
            answers[client.get("/jobs").status_code] += 1
    assert answers == {401: 10, 429: 20}


def test_serve_with_several_http_processes_runs_jobs_in_one_worker(
    servers: Servers, database_url: str
) -> None:
    server = servers.start("--workers", "2")
    admin = create_token(database_url, "--name", "ops")
    with server.client(admin) as client:
        ids = []
        for n in range(6):
            response = client.post("/jobs", json={"kind": "greet", "payload": {"name": f"n{n}"}})
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])

        def finished() -> list[Json]:
            jobs = [client.get(f"/jobs/{job_id}").json() for job_id in ids]
            return jobs if all(j["status"] == "succeeded" for j in jobs) else []

        jobs = until(finished, 20, what="the jobs submitted to either HTTP process to run")
        workers = client.get("/workers").json()
    # One worker, in the command's own process; the HTTP processes are its children.
    assert [(w["engine"], w["pid"]) for w in workers] == [("jobtrail", server.process.pid)]
    assert {str(server.process.pid) in j["worker"] for j in jobs} == {True}
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    assert len(children.read_text().split()) >= 2
