"""The served API: GET /jobs/{id} latency and throughput under 50 concurrent clients, and the
delay from a write in another process to the Server-Sent Event that carries it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from tests.servers import free_port

import jobtrail
from bench.servers import ROOT, database

WRITER = """
import sys, time, jobtrail
tracker = jobtrail.Tracker(sys.argv[1], flush_interval=0).open()
job_id = sys.argv[2]
with tracker.track("bench_stream", key=job_id) as ctx:
    print(ctx.job_id, flush=True)
    time.sleep(1.0)
    for n in range(int(sys.argv[3])):
        ctx.progress(n, f"step {n}")
        time.sleep(0.2)
"""


def serve(url: str, processes: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | {"JOBTRAIL_DATABASE_URL": url, "JOBTRAIL_RATE_LIMIT": "1000000/second"}
    command = [str(Path(sys.executable).parent / "jobtrail"), "serve", "--port", str(port)]
    command += ["--no-worker", "--workers", str(processes)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/api/v1/health").status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("jobtrail serve did not start")


async def hammer(base: str, token: str, job_id: str, clients: int, seconds: float) -> None:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(f"/api/v1/jobs/{job_id}")
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 200

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"  GET /jobs/{{id}}, {clients} clients: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"{len(latencies) / elapsed:,.0f} requests/s"
    )


@dataclass(frozen=True)
class WrkFigures:
    """What wrk measured: throughput, latency percentiles and answers other than 2xx/3xx."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def wrk_ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``1.25ms``, ``2.01s``) in milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text.removesuffix(unit)) * factor
    raise ValueError(f"not a wrk duration: {text!r}")


def wrk(url: str, headers: dict[str, str], clients: int, seconds: float) -> WrkFigures:
    """Load ``url`` from wrk (C) with ``clients`` connections, leaving the cores to the server."""
    command = ["wrk", "-t2", f"-c{clients}", f"-d{int(seconds)}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    fields = {line.split()[0]: line.split()[-1] for line in output.splitlines() if line.strip()}
    return WrkFigures(
        requests_per_s=float(fields["Requests/sec:"]),
        p50_ms=wrk_ms(fields["50%"]),
        p99_ms=wrk_ms(fields["99%"]),
        non_2xx=int(fields.get("Non-2xx", "0")),
    )


def hammer_with_wrk(base: str, token: str, job_id: str, clients: int, seconds: float) -> None:
    """The same load from wrk (C), which leaves more of the 2 cores to the server."""
    url = f"{base}/api/v1/jobs/{job_id}"
    figures = wrk(url, {"Authorization": f"Bearer {token}"}, clients, seconds)
    print(
        f"  GET /jobs/{{id}}, {clients} connections (wrk): p50 {figures.p50_ms:.2f} ms, "
        f"p99 {figures.p99_ms:.2f} ms, {figures.requests_per_s:,.0f} requests/s, "
        f"{figures.non_2xx} non-2xx"
    )


def stream_delay(base: str, token: str, url: str, writes: int) -> None:
    key = f"stream-{time.time_ns()}"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, key, str(writes)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    job_id = writer.stdout.readline().strip()
    delays: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{base}/api/v1/jobs/{job_id}/stream", headers=headers) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            job = json.loads(line[6:])
            if job["message"] and job["message"].startswith("step"):
                written = datetime.fromisoformat(job["updated_at"]).timestamp()
                delays.append(time.time() - written)
            if job["status"] != "running":
                break
    writer.wait()
    print(
        f"  SSE delay from another process's write: median {statistics.median(delays) * 1000:.0f}"
        f" ms, max {max(delays) * 1000:.0f} ms ({len(delays)} updates)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--processes", type=int, action="append", help="serve --workers N")
    args = parser.parse_args()
    with database("sqlite", "api") as url:
        tracker = jobtrail.Tracker(url).open()
        token = tracker.ops.create_token("bench", None)
        with tracker.track("bench_get") as ctx:
            ctx.progress(50, "half way")
        for processes in args.processes or [1, os.cpu_count() or 1]:
            process, base = serve(url, processes)
            try:
                print(f"sqlite, jobtrail serve --workers {processes}:")
                asyncio.run(hammer(base, token, ctx.job_id, args.clients, args.seconds))
                if shutil.which("wrk"):
                    hammer_with_wrk(base, token, ctx.job_id, args.clients, args.seconds)
                stream_delay(base, token, url, args.writes)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        tracker.close()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
