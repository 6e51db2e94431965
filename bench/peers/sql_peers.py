"""Procrastinate and jobtrail: the peers whose jobs are rows in a database.

The worker processes import this module too: Procrastinate's connection comes from
``PEERS_PG_CONNINFO``, jobtrail's store from ``JOBTRAIL_DATABASE_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import version
from typing import TYPE_CHECKING

import procrastinate
from procrastinate.jobs import Status as ProcrastinateStatus

import jobtrail
from bench.peers.harness import EXECUTORS, JobFailed, Peer, python_command

if TYPE_CHECKING:
    from tests.servers import PostgresServer

# --------------------------------------------------------------------------- Procrastinate

CONNINFO = os.environ.get("PEERS_PG_CONNINFO", "")
procrastinate_app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=CONNINFO))
FINAL = {ProcrastinateStatus.SUCCEEDED.value, ProcrastinateStatus.FAILED.value}


@procrastinate_app.task(name="noop", pass_context=True)
async def procrastinate_noop(
    context: procrastinate.JobContext,
    owner: str | None = None,
    progress: int = 0,
    fail: bool = False,
) -> None:
    """Procrastinate has no progress API: the job writes its own row, on the app's pool."""
    assert context.job.id is not None
    for n in range(progress):
        await context.app.connector.execute_query_async(
            "INSERT INTO peer_progress (job_id, progress) VALUES (%(job_id)s, %(n)s) "
            "ON CONFLICT (job_id) DO UPDATE SET progress = EXCLUDED.progress",
            job_id=context.job.id,
            n=n,
        )
    if fail:
        raise JobFailed(f"job of {owner} asked to fail")


class ProcrastinatePeer(Peer):
    name = "Procrastinate"
    version = version("procrastinate")
    settings = (
        f"`procrastinate worker --concurrency {EXECUTORS}` (one process, async tasks, "
        "LISTEN/NOTIFY), `defer()` from a sync app; progress by an upsert into a table of the "
        "app's own (it has no progress API); lists by `job_manager.list_jobs` and SQL on `args`"
    )

    def __init__(self, server: PostgresServer) -> None:
        server.create_database("procrastinate")
        self.conninfo = f"host={server.host} port={server.port} user={server.user} "
        self.conninfo += "dbname=procrastinate"
        assert self.conninfo == CONNINFO, "set PEERS_PG_CONNINFO before importing this module"
        procrastinate_app.open()
        procrastinate_app.schema_manager.apply_schema()
        self.sql = procrastinate_app.connector.get_sync_connector()
        self.sql.execute_query(
            "CREATE TABLE peer_progress (job_id bigint PRIMARY KEY, progress integer NOT NULL)"
        )

    def reset(self) -> None:
        self.sql.execute_query("TRUNCATE procrastinate_jobs, peer_progress CASCADE")

    def worker_commands(self) -> list[list[str]]:
        app = "bench.peers.sql_peers.procrastinate_app"
        return [
            python_command(
                "procrastinate", "--app", app, "worker", "--concurrency", str(EXECUTORS)
            )
        ]  # fmt: skip

    def worker_env(self) -> dict[str, str]:
        return {"PEERS_PG_CONNINFO": self.conninfo}

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return procrastinate_noop.defer(owner=owner, progress=progress, fail=fail)

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, int)
        return procrastinate_app.job_manager.list_jobs(id=handle)[0].status in FINAL

    def done(self) -> int:
        row = self.sql.execute_query_one(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status IN ('succeeded', 'failed')"
        )
        return int(row["n"])

    def list_failed(self, limit: int) -> int:
        return len(procrastinate_app.job_manager.list_jobs(status="failed")[:limit])

    def list_owner(self, owner: str, limit: int) -> int:
        rows = self.sql.execute_query_all(
            "SELECT id, status, args FROM procrastinate_jobs WHERE args->>'owner' = %(owner)s "
            "ORDER BY id DESC LIMIT %(limit)s",
            owner=owner,
            limit=limit,
        )
        return len(rows)

    def close(self) -> None:
        procrastinate_app.close()


# --------------------------------------------------------------------------- jobtrail


def build_tracker(url: str | None = None) -> jobtrail.Tracker:
    """A tracker with the benchmark's job: ``progress`` calls of ``ctx.progress``, then fail
    when asked (its store from ``JOBTRAIL_DATABASE_URL`` when ``url`` is None)."""
    tracker = jobtrail.Tracker(url)

    @tracker.job("noop")
    def noop(ctx: jobtrail.Context, progress: int = 0, fail: bool = False) -> None:
        for n in range(progress):
            ctx.progress(n * 100 / progress, f"step {n}")
        if fail:
            raise JobFailed("asked to fail")

    return tracker


class JobtrailPeer(Peer):
    """jobtrail as ``jobtrail worker`` runs it, on a new store at each reset."""

    version = version("jobtrail")

    def __init__(self, name: str, where: str, new_url: Callable[[], str]) -> None:
        self.name = name
        self.settings = (
            f"`jobtrail worker --concurrency {EXECUTORS}` on {where}, default settings; "
            "`tracker.submit` and `get`/`list` from the client's own `Tracker`"
        )
        self.new_url = new_url
        self.url = new_url()
        self.tracker = build_tracker(self.url)

    def reset(self) -> None:
        self.tracker.close()
        self.url = self.new_url()
        self.tracker = build_tracker(self.url)

    def worker_commands(self) -> list[list[str]]:
        app = "bench.peers.jobtrail_app:tracker"
        concurrency = str(EXECUTORS)
        return [python_command("jobtrail", "worker", "--app", app, "--concurrency", concurrency)]

    def worker_env(self) -> dict[str, str]:
        return {"JOBTRAIL_DATABASE_URL": self.url}

    def submit(self, owner: str | None = None, progress: int = 0, fail: bool = False) -> object:
        return self.tracker.submit("noop", {"progress": progress, "fail": fail}, owner=owner).id

    def finished(self, handle: object) -> bool:
        assert isinstance(handle, str)
        return self.tracker.get(handle).terminal

    def done(self) -> int:
        return self.tracker.list(status=["succeeded", "failed"], limit=1).total_count

    def list_failed(self, limit: int) -> int:
        return len(self.tracker.list(status="failed", limit=limit).jobs)

    def list_owner(self, owner: str, limit: int) -> int:
        return len(self.tracker.list(owner=owner, limit=limit).jobs)

    def close(self) -> None:
        self.tracker.close()
