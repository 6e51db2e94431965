"""Celery, RQ and Dramatiq on one Redis server, each set up as its documentation shows.

The worker processes import this module too: the broker's URL comes from ``PEERS_REDIS_URL``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Any

import dramatiq
import redis
import rq
from celery import Celery
from celery.result import AsyncResult
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage
from dramatiq.results import Results, ResultFailure, ResultMissing
from dramatiq.results.backends.redis import RedisBackend
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench.peers.harness import EXECUTORS, JobFailed, Peer, python_command

URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/0")
DONE = "peers:done"  # a counter the Celery and Dramatiq jobs bump: neither can count its own
client = redis.Redis.from_url(URL)


def noop(owner: str | None, progress: int, fail: bool, report: Callable[[int], None]) -> None:
    """The job of every Redis peer: ``progress`` reports, then fail when asked."""
    for n in range(progress):
        report(n)
    if fail:
        raise JobFailed(f"job of {owner} asked to fail")


class RedisPeer(Peer):
    """A peer whose jobs live in the Redis server at ``URL`` (the executors are stopped)."""

    def reset(self) -> None:
        client.flushdb()

    def worker_env(self) -> dict[str, str]:
        return {"PEERS_REDIS_URL": URL}


# --------------------------------------------------------------------------- Celery

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
                "celery", "-A", "bench.peers.redis_peers:celery_app", "worker",
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


# --------------------------------------------------------------------------- RQ

rq_queue = rq.Queue("peers", connection=client)


def rq_noop(owner: str | None = None, progress: int = 0, fail: bool = False) -> None:
    job = rq.get_current_job()
    assert job is not None

    def report(n: int) -> None:
        job.meta["progress"] = n
        job.save_meta()

    noop(owner, progress, fail, report)


class RQPeer(RedisPeer):
    name = "RQ"
    version = version("rq")
    settings = (
        f"{EXECUTORS} × `rq worker` (the default forking worker), one queue; progress by "
        "`job.meta` + `save_meta()`; lists from the finished and failed registries"
    )

    def worker_commands(self) -> list[list[str]]:
        command = python_command("rq", "worker", "--url", URL, "--quiet", "peers")
        return [command] * EXECUTORS

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return rq_queue.enqueue(rq_noop, owner=owner, progress=progress, fail=fail)

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, rq.job.Job)
        return handle.get_status(refresh=True) in (rq.job.JobStatus.FINISHED, "failed")

    def done(self) -> int:
        registries = FinishedJobRegistry(queue=rq_queue), FailedJobRegistry(queue=rq_queue)
        return sum(registry.get_job_count(cleanup=False) for registry in registries)

    def list_failed(self, limit: int) -> int:
        ids = FailedJobRegistry(queue=rq_queue).get_job_ids(0, limit - 1)
        return len([job for job in rq.job.Job.fetch_many(ids, client) if job is not None])

    def list_owner(self, owner: str, limit: int) -> int:
        ids = FinishedJobRegistry(queue=rq_queue).get_job_ids()
        ids += FailedJobRegistry(queue=rq_queue).get_job_ids()
        jobs = [job for job in rq.job.Job.fetch_many(ids, client) if job is not None]
        return len([job for job in jobs if job.kwargs.get("owner") == owner][:limit])


# --------------------------------------------------------------------------- Dramatiq

dramatiq_results = RedisBackend(url=URL)
dramatiq_broker = RedisBroker(url=URL)
dramatiq_broker.add_middleware(Results(backend=dramatiq_results))
dramatiq_broker.add_middleware(CurrentMessage())
dramatiq.set_broker(dramatiq_broker)


@dramatiq.actor(actor_name="noop", store_results=True, max_retries=0)
def dramatiq_noop(owner: str | None = None, progress: int = 0, fail: bool = False) -> None:
    message = CurrentMessage.get_current_message()
    key = f"progress:{message.message_id if message else ''}"
    try:
        noop(owner, progress, fail, lambda n: client.set(key, n))
    finally:
        client.incr(DONE)


class DramatiqPeer(RedisPeer):
    name = "Dramatiq"
    version = version("dramatiq")
    settings = (
        f"`dramatiq --processes 1 --threads {EXECUTORS}`, Redis broker, the Results middleware "
        "on Redis (`store_results`), no retries; progress by a Redis `SET` (it has no API)"
    )

    def worker_commands(self) -> list[list[str]]:
        return [
            python_command(
                "dramatiq", "bench.peers.redis_peers",
                "--processes", "1", "--threads", str(EXECUTORS),
            )
        ]  # fmt: skip

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return dramatiq_noop.send(owner=owner, progress=progress, fail=fail)

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, dramatiq.Message)
        try:
            handle.get_result(backend=dramatiq_results)
        except ResultMissing:
            return False
        except ResultFailure:
            return True
        return True

    def done(self) -> int:
        return int(client.get(DONE) or 0)
