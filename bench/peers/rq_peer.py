"""RQ as its documentation runs it: `rq worker` processes on one queue."""

from __future__ import annotations

from importlib.metadata import version

import rq
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench.peers.harness import EXECUTORS, python_command
from bench.peers.redis_peer import RedisPeer, client, noop

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
        return [python_command("python", "-m", "bench.peers.rq_worker")] * EXECUTORS

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
