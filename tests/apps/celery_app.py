"""A Celery app with tracked tasks, for the integration tests (in-thread and as a process)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from celery import Celery

import jobtrail
from jobtrail.integrations.celery import TrackedTask, install, tracking_of


def make_app(broker_url: str, tracker: jobtrail.Tracker) -> Celery:
    """A Celery app on ``broker_url`` whose tasks are mirrored into ``tracker``."""
    app = Celery("jobtrail_tests", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )
    install(app, tracker)
    define_tasks(app)
    return app


def use_tracker(app: Celery, tracker: jobtrail.Tracker) -> Celery:
    """Point ``app``'s jobtrail tracking at ``tracker`` (one test's store), with an empty queue."""
    tracking_of(app).use(tracker)
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        channel.queue_purge("celery")
    return app


def define_tasks(app: Celery) -> None:
    """The tasks the tests run."""

    @app.task(base=TrackedTask, bind=True, name="sync_listings")
    def sync_listings(self: TrackedTask, listings: list[str], bad: list[str]) -> dict[str, int]:
        for listing in self.items(listings):
            with self.item(listing):
                self.progress(message=f"syncing {listing}")
                if listing in bad:
                    raise ConnectionError(f"upstream refused {listing}")
        return {"listings": len(listings)}

    @app.task(base=TrackedTask, bind=True, name="staged_sync")
    def staged_sync(self: TrackedTask, media: list[str]) -> int:
        self.stage("fetching", start=0, end=10, message="fetching the library")
        self.stage("found", start=20, end=90, message=f"found {len(media)} items")
        for name in self.items(media):
            with self.item(name):
                pass
        self.stage("done", start=100)
        return len(media)

    @app.task(base=TrackedTask, bind=True, name="explode")
    def explode(self: TrackedTask, secret: str) -> None:
        raise ValueError(f"cannot connect with token={secret}")

    @app.task(base=TrackedTask, bind=True, name="flaky", max_retries=2)
    def flaky(self: TrackedTask) -> str:
        if self.request.retries == 0:
            raise self.retry(countdown=0.1, exc=RuntimeError("first try fails"))
        return "ok"

    define_process_tasks(app)
    define_celery_progress_tasks(app)


def define_celery_progress_tasks(app: Celery) -> None:
    """Tasks that report progress Celery's way, with no jobtrail call at all."""

    @app.task(base=TrackedTask, bind=True, name="convert_pages")
    def convert_pages(self: TrackedTask, pages: int) -> int:
        for page in range(1, pages + 1):
            meta = {"current": page, "total": pages, "status": f"page {page} of {pages}"}
            self.update_state(state="PROGRESS", meta=meta)
        self.update_state(state="PROGRESS", meta={"percent": 250, "message": "writing"})
        return pages

    app.task(base=TrackedTask, bind=True, name="convert_slowly")(convert_slowly)
    # A common Celery idiom that also catches jobtrail's Cancelled: a cancel must still win.
    app.task(
        base=TrackedTask,
        bind=True,
        name="convert_slowly_retrying",
        autoretry_for=(Exception,),
        retry_kwargs={"countdown": 0},
        max_retries=3,
    )(convert_slowly)


def convert_slowly(self: TrackedTask, pages: int, started_file: str) -> int:
    """Convert ``pages`` pages, 50 ms each, reporting only through ``update_state``."""
    Path(started_file).write_text("started")
    for page in range(1, pages + 1):
        threading.Event().wait(0.05)  # a page's work
        self.update_state(state="PROGRESS", meta={"current": page, "total": pages})
    return pages


def define_process_tasks(app: Celery) -> None:
    """Tasks about stopping: cancellation and a worker that dies."""

    @app.task(base=TrackedTask, bind=True, name="wait_forever")
    def wait_forever(self: TrackedTask, started_file: str) -> None:
        Path(started_file).write_text("started")
        while True:
            self.check()
            threading.Event().wait(0.05)

    @app.task(base=TrackedTask, bind=True, name="die_once")
    def die_once(self: TrackedTask, marker: str) -> int:
        self.progress(10, "about to die")
        self.ctx.flush()
        if not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    @app.task(name="untracked")
    def untracked() -> str:
        return "not mirrored"


def _from_environment() -> Any:
    broker = os.environ.get("CELERY_TEST_BROKER")
    if not broker:
        return None
    return make_app(broker, jobtrail.Tracker())


app = _from_environment()
