"""Celery with a Redis broker and result backend, as its documentation sets it up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from bench.peers.harness import EXECUTORS, python_command
from bench.peers.redis_peer import DONE, URL, RedisPeer, client, noop

celery_app = Celery("peers", broker=URL, backend=URL)
# The result backend keeps each task's state and arguments, so a status can be read and the
# results listed; acks after the task ran, as the docs advise for work that must not be lost.
celery_app.conf.update(result_extended=True, task_acks_late=True, worker_hijack_root_logger=False)


@celery_app.task(name="noop", bind=True)
def celery_noop(self: Any, owner: str | None = None, progress: int = 0, fail: bool = False) -> None:
    def report(n: int) -> None:
        self.update_state(state="PROGRESS", meta={"current": n, "total": progress})

    try:
        noop(owner, progress, fail, report)
    finally:
        client.incr(DONE)


def scan_results(pattern: str) -> Iterator[dict[str, Any]]:
    """Every stored result under ``pattern``, read in batches (Redis has no other index)."""
    keys = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(keys), 500):
        for raw in client.mget(keys[start : start + 500]):
            if raw is not None:
                yield json.loads(raw)


class CeleryPeer(RedisPeer):
    name = "Celery"
    version = version("celery")
    settings = (
        f"`celery worker --pool prefork --concurrency {EXECUTORS}`, Redis broker and result "
        "backend, `result_extended`, `task_acks_late`; progress by `update_state`"
    )

    def worker_commands(self) -> list[list[str]]:
        return [
            python_command(
                "celery", "-A", "bench.peers.celery_peer:celery_app", "worker",
                "--pool", "prefork", "--concurrency", str(EXECUTORS), "--loglevel", "WARNING",
            )
        ]  # fmt: skip

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return celery_noop.delay(owner=owner, progress=progress, fail=fail)

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, AsyncResult)
        return bool(AsyncResult(handle.id, app=celery_app).ready())

    def done(self) -> int:
        return int(client.get(DONE) or 0)

    def list_failed(self, limit: int) -> int:
        found = [r for r in scan_results("celery-task-meta-*") if r["status"] == "FAILURE"]
        return len(found[:limit])

    def list_owner(self, owner: str, limit: int) -> int:
        results = scan_results("celery-task-meta-*")
        return len([r for r in results if (r.get("kwargs") or {}).get("owner") == owner][:limit])
