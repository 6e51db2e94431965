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
