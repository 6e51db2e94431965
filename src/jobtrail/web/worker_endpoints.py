"""``GET /workers``: the registry of live workers, for admin tokens."""

# No ``from __future__ import annotations``: FastAPI reads the caller dependency evaluated.

from typing import Annotated, TypeAlias

from fastapi import APIRouter, Depends

from jobtrail.exceptions import NotAllowed
from jobtrail.jobs import WorkerInfo
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal


def add_worker_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add ``GET /workers`` to ``router``, its callers admitted through ``gate``."""
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]

    @router.get("/workers", response_model=list[WorkerInfo], tags=["service"])
    def workers(caller: Caller) -> list[WorkerInfo]:
        """The live workers (seen within the heartbeat timeout): jobtrail's and Celery's, with
        their host, process, queues (null: every queue), kinds, threads and jobs held. They
        name hosts and every owner's kinds, so only an admin token may read them (others:
        403)."""
        if not caller.admin:
            raise NotAllowed("the worker registry needs an admin token")
        return tracker.workers()
