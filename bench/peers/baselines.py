"""The floors jobtrail is held against: raw sqlite3 commits, and a plain FastAPI app's req/s."""

from __future__ import annotations

import signal
import sqlite3
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import httpx
from tests.servers import free_port

import jobtrail
from bench.api import WrkFigures, serve, wrk
from bench.peers.harness import python_command
from bench.servers import ROOT
from jobtrail.jobs import NewEvent
from jobtrail.states import EventType
from jobtrail.store.rows import event_row, new_row
from jobtrail.store.statements import Statements

HTTP_CLIENTS = 50


def sqlite_commits(path: Path, rows: int, repeats: int) -> float:
    """Median single-row INSERT + COMMIT per second with jobtrail's pragmas (WAL, NORMAL)."""
    rates = []
    for n in range(repeats):
        conn = sqlite3.connect(path.with_suffix(f".{n}.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, payload TEXT, created_at REAL)")
        started = time.perf_counter()
        for _ in range(rows):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO jobs VALUES (?, '{}', ?)", (str(uuid.uuid4()), time.time()))
            conn.execute("COMMIT")
        rates.append(rows / (time.perf_counter() - started))
        conn.close()
    return statistics.median(rates)


def sqlite_job_rows(path: Path, rows: int, repeats: int) -> float:
    """Median submits per second done by hand in raw sqlite3: jobtrail's own INSERTs (the job
    row into its indexed table, its ``created`` event) in one transaction, parameters built
    before the clock starts — what ``submit`` writes, without any of jobtrail's Python."""
    rates = []
    for n in range(repeats):
        url = f"sqlite:///{path.with_suffix(f'.{n}.db')}"
        with jobtrail.Tracker(url) as tracker:
            database = tracker.store.database
            statements = Statements(database.engine.dialect, database.heartbeat_clock)
            tracker.job("noop")(_noop)
            kind = tracker.kind_of("noop")
            now = tracker.now()
            prepared = []
            for _ in range(rows):
                row = new_row(kind.new_job({}, now), now)
                event = event_row(row["id"], now, NewEvent(EventType.CREATED))
                prepared.append(
                    (statements.insert_jobs.params(row), statements.event.params(event))
                )
        conn = sqlite3.connect(path.with_suffix(f".{n}.db"), isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        job_sql, event_sql = statements.insert_jobs.sql, statements.event.sql
        started = time.perf_counter()
        for job, event in prepared:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(job_sql, job)
            conn.execute(event_sql, event)
            conn.execute("COMMIT")
        rates.append(rows / (time.perf_counter() - started))
        conn.close()
    return statistics.median(rates)


def _noop(ctx: jobtrail.Context) -> None:
    """The kind whose rows ``sqlite_job_rows`` writes."""


def plain_fastapi(seconds: float) -> WrkFigures:
    """wrk against ``bench.peers.plain_api`` under uvicorn, as ``jobtrail serve`` runs."""
    port = free_port()
    command = python_command("uvicorn", "bench.peers.plain_api:app", "--port", str(port))
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/api/v1/jobs/some-id"
    try:
        for _ in range(200):
            try:
                httpx.get(url).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        return wrk(url, {}, HTTP_CLIENTS, seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def jobtrail_serve(url: str, seconds: float) -> WrkFigures:
    """wrk against ``GET /api/v1/jobs/{id}`` of ``jobtrail serve`` (one process, a token)."""
    with jobtrail.Tracker(url) as tracker:
        token = tracker.ops.create_token("bench", None)
        with tracker.track("bench_get") as ctx:
            ctx.progress(50, "half way")
    process, base = serve(url)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        return wrk(f"{base}/api/v1/jobs/{ctx.job_id}", headers, HTTP_CLIENTS, seconds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
