"""The demo: realistic jobs (partial failures, retries, stages, a long cancellable one) run live."""

from __future__ import annotations

import random
import threading
import time

from rich.console import Group
from rich.live import Live
from rich.table import Table

from jobtrail.context import Context
from jobtrail.jobs import Job, Status
from jobtrail.tracker import Tracker

STATUS_STYLE = {
    Status.QUEUED: "cyan",
    Status.WAITING: "magenta",
    Status.RUNNING: "yellow",
    Status.SUCCEEDED: "green",
    Status.PARTIAL: "dark_orange",
    Status.FAILED: "red",
    Status.CANCELLED: "grey50",
}


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
    def media_sync(ctx: Context, library: str, files: int = 240) -> dict[str, int]:
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
    if choice < 0.85:
        doc = f"contract-{random.randint(100, 999)}.pdf"
        return tracker.submit("document_ingest", {"document": doc}, owner=account, priority="high")
    return tracker.submit("media_sync", {"library": account}, owner=account, trigger="scheduled")


def _table(tracker: Tracker) -> Group:
    active = Table(title="Active jobs", expand=True)
    for column in ("kind", "owner", "status", "progress", "message"):
        active.add_column(column)
    for job in tracker.active(limit=12):
        bar = "█" * int(job.progress / 5) + "·" * (20 - int(job.progress / 5))
        style = STATUS_STYLE[job.status]
        active.add_row(job.kind, job.owner or "", f"[{style}]{job.status}", bar, job.message or "")
    recent = Table(title="Recently finished", expand=True)
    for column in ("kind", "owner", "status", "items", "error"):
        recent.add_column(column)
    for job in tracker.list(status=["succeeded", "partial", "failed", "cancelled"], limit=8).jobs:
        items = f"{job.items_succeeded or 0}/{job.items_total}" if job.items_total else ""
        style = STATUS_STYLE[job.status]
        recent.add_row(
            job.kind, job.owner or "", f"[{style}]{job.status}", items, job.error_message or ""
        )
    return Group(active, recent)


def run_demo(url: str, count: int = 0) -> None:
    """Run the demo worker and a job generator on ``url``; show them until Ctrl-C."""
    import logging

    import structlog

    # The live table is the demo's output; job logs would scroll it away.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    tracker = Tracker(url)
    register_demo_jobs(tracker)
    stop = threading.Event()

    def generate() -> None:
        submitted = 0
        while not stop.wait(random.uniform(0.5, 2.5)) and (count == 0 or submitted < count):
            submit_demo_job(tracker)
            submitted += 1

    generator = threading.Thread(target=generate, name="demo-generator")
    with tracker.worker(concurrency=4, grace_period=5) as worker:
        generator.start()
        try:
            with Live(_table(tracker), refresh_per_second=4) as live:
                while worker.alive:
                    time.sleep(0.25)
                    live.update(_table(tracker))
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            generator.join()
    tracker.close()
