"""The demo: the dashboard with realistic jobs — partial failures, retries, stages, a long one."""

from __future__ import annotations

import random
import threading
import time

from jobtrail.context import Context
from jobtrail.jobs import Job
from jobtrail.tracker import Tracker


def register_demo_jobs(tracker: Tracker, pace: float = 1.0) -> None:
    """Register the demo kinds on ``tracker``; ``pace`` scales every sleep (tests use less)."""

    @tracker.job("listing_sync", max_attempts=2)
    def listing_sync(ctx: Context, account_id: str, listings: int = 20) -> dict[str, int]:
        for n in ctx.items(range(1, listings + 1)):
            with ctx.item(f"{account_id}-L{n}"):
                ctx.progress(message=f"Syncing listing {n} of {listings}")
                time.sleep(0.15 * pace)
                if random.random() < 0.08:
                    raise ConnectionError(f"upstream refused listing {n} (HTTP 502)")
        return {"listings": listings}

    @tracker.job("document_ingest", max_attempts=3, retry_backoff=2.0)
    def document_ingest(ctx: Context, document: str) -> dict[str, str]:
        stages = [("Downloading", 15), ("Parsing", 40), ("Embedding", 85), ("Indexing", 100)]
        for name, percent in stages:
            ctx.progress(message=f"{name} {document}")
            time.sleep(random.uniform(0.5, 1.5) * pace)
            ctx.progress(percent, stage=name.lower())
        if ctx.attempt == 1 and random.random() < 0.3:
            raise TimeoutError("embedding service timed out")
        return {"document": document, "chunks": str(random.randint(5, 80))}

    @tracker.job("media_sync", timeout=600)
    def media_sync(ctx: Context, library: str, files: int = 120) -> dict[str, int]:
        ctx.set_total(files)
        for n in range(files):
            ctx.check()
            ctx.progress(message=f"Copying {library}/clip-{n:04}.mp4")
            time.sleep(0.25 * pace)
            ctx.advance()
        return {"files": files}

    @tracker.job("nightly_report")
    def nightly_report(ctx: Context) -> dict[str, int]:
        ctx.progress(50, "Aggregating yesterday's jobs")
        time.sleep(1 * pace)
        return {"rows": random.randint(100, 999)}

    tracker.schedule("report-every-minute", "nightly_report", every=60)


def submit_demo_job(tracker: Tracker) -> Job:
    """Submit one random demo job, the way an app's endpoints and timers would."""
    account = random.choice(["acme", "globex", "initech", "umbrella"])
    choice = random.random()
    if choice < 0.45:
        return tracker.submit("listing_sync", {"account_id": account}, owner=account)
    if choice < 0.9:
        doc = f"contract-{random.randint(100, 999)}.pdf"
        return tracker.submit("document_ingest", {"document": doc}, owner=account, priority="high")
    return tracker.submit("media_sync", {"library": account}, owner=account, trigger="scheduled")


def run_demo(url: str, host: str = "127.0.0.1", port: int = 8000, count: int = 0) -> None:
    """Serve the dashboard (open mode, loopback only) with a worker and a stream of demo jobs."""
    import logging

    import structlog
    import uvicorn

    from jobtrail.web.app import create_app

    # The dashboard is the demo's output; per-item warnings would flood the terminal.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    tracker = Tracker(url)
    register_demo_jobs(tracker)
    stop = threading.Event()

    def generate() -> None:
        submitted = 0
        for _ in range(6):  # something to look at straight away
            submit_demo_job(tracker)
        while not stop.wait(random.uniform(0.8, 3.0)) and (count == 0 or submitted < count):
            submit_demo_job(tracker)
            submitted += 1

    generator = threading.Thread(target=generate, name="demo-generator")
    generator.start()
    print(f"jobtrail demo: open http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        app = create_app(tracker, no_auth=True, concurrency=6)
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        stop.set()
        generator.join()
        tracker.close()
