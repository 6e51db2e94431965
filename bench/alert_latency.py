"""Alert latency: a job fails in a worker → its alert's message reaches a JSON receiver on
127.0.0.1 (apprise ``json://``), with the default ``alert_interval`` of 1 s, on an otherwise
idle system; each failure is followed by a success, so that every failure fires anew, and
comes at a random moment between two evaluations."""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import Queue
from typing import Any

import structlog

import jobtrail
from bench.servers import database


def receiver() -> tuple[ThreadingHTTPServer, Queue[tuple[float, dict[str, Any]]]]:
    """An HTTP server on a free loopback port; each post lands in the queue with its time."""
    arrived: Queue[tuple[float, dict[str, Any]]] = Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            arrived.put((time.time(), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrived


def latencies(url: str, failures: int) -> list[float]:
    """Seconds from each failed job's ``completed_at`` to its message's arrival."""
    server, arrived = receiver()
    tracker = jobtrail.Tracker(url).open()
    fail = {"now": True}

    @tracker.job("sync")
    def sync(ctx: jobtrail.Context) -> None:
        if fail["now"]:
            raise RuntimeError("upstream down")

    port = server.server_address[1]
    tracker.alert("lat", "failed", kind="sync", channels=[f"json://127.0.0.1:{port}/a"])
    samples = []
    with tracker.worker(concurrency=1):
        for _ in range(failures):
            time.sleep(random.uniform(0, 1))  # failures land anywhere between two evaluations
            fail["now"] = True
            job = tracker.wait(sync.submit().id, timeout=30)
            at, message = arrived.get(timeout=30)
            assert "firing" in message["title"], message
            assert job.completed_at is not None
            samples.append(at - job.completed_at.timestamp())
            fail["now"] = False
            tracker.wait(sync.submit().id, timeout=30)
            assert "resolved" in arrived.get(timeout=30)[1]["title"]
    tracker.close()
    server.shutdown()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--failures", type=int, default=30)
    parser.add_argument("--dialect", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for dialect in args.dialect or ["sqlite", "postgresql"]:
        with database(dialect, "alerts") as url:
            samples = sorted(latencies(url, args.failures))
        p50 = statistics.median(samples)
        p99 = samples[max(int(len(samples) * 0.99) - 1, 0)]
        print(
            f"{dialect:<10} failed job → alert received: p50 {p50:5.2f} s, p99 {p99:5.2f} s, "
            f"max {samples[-1]:5.2f} s ({args.failures} failures, {datetime.now(UTC):%Y-%m-%d})"
        )


if __name__ == "__main__":
    main()
