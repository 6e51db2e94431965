"""Where the Celery integration's writes go: the ``queued`` records of published tasks, on
the store's write-behind queue (``CeleryRows.add_soon``: many per transaction, read back by
this process at once) or written before publishing, and task outcomes sharing the commits of
the worker process that ran them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import replace

from jobtrail.exceptions import InvalidData, PayloadError, StoreError
from jobtrail.jobs import NewJob
from jobtrail.logs import logger
from jobtrail.runtime import Runtime

log = logger("jobtrail.celery")


def publish_soon(runtime: Runtime, new: NewJob) -> None:
    """Queue the record of a task being published (checked and redacted now, as any job is
    made), written with the others queued by then; a refused one is logged."""
    try:
        prepared = runtime.submitter.prepared(replace(new, external=True))
    except (InvalidData, PayloadError) as exc:
        _lost(new, f"refused: {exc}")
        return
    runtime.store.celery.add_soon(prepared, lambda new, exc: _lost(new, str(exc)))


def write_published(runtime: Runtime, news: Sequence[NewJob]) -> None:
    """Insert published tasks' records in one transaction, retried through an outage (but
    not once the process is ending: its exit must not wait on a database that is gone);
    when the database refuses one, each is written alone so the others still land."""
    submitter = runtime.submitter
    try:
        news = [submitter.prepared(replace(new, external=True)) for new in news]
        add = runtime.store.celery.add
        if threading.main_thread().is_alive():
            runtime.store.database.through_outage(lambda: add(news))
        else:
            add(news)
    except (InvalidData, PayloadError) as exc:
        if len(news) == 1:
            _lost(news[0], f"refused: {exc}")
            return
        for new in news:
            write_published(runtime, [new])
    except StoreError as exc:
        for new in news:
            _lost(new, str(exc))


def _lost(new: NewJob, why: str) -> None:
    # The worker that takes the task still creates its record on sight.
    log.error("the record of a published task was not written", job_id=new.id, error=why)


class SharedCommits:
    """Task outcomes queued for a commit shared with the process's other writes (the
    database's group commit), in the process that runs tasks — never in a prefork parent,
    whose commit thread its children would not inherit."""

    def __init__(self) -> None:
        self.in_worker = False
        """A worker runs in this process (or its parent, for prefork children)."""
        self._grouped: tuple[int, Runtime] | None = None
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether outcomes are queued instead of waited for."""
        return self._grouped is not None

    def use(self, runtime: Runtime) -> None:
        """Share the commits of ``runtime``'s store from now on, if a worker runs here."""
        grouped = self._grouped
        if grouped is not None and grouped[0] == os.getpid() and grouped[1] is runtime:
            return
        with self._lock:  # pool threads start tasks at the same time
            if self._grouped != grouped:
                return
            self.stop()
            if self.in_worker:
                runtime.store.database.commits.start_grouping()
                self._grouped = (os.getpid(), runtime)

    def stop(self) -> None:
        """Commit what is queued and stop sharing (a forked child has nothing to stop)."""
        grouped, self._grouped = self._grouped, None
        if grouped is not None and grouped[0] == os.getpid():
            grouped[1].store.database.commits.stop_grouping()
