"""`make bench-peers`: every peer and jobtrail measured in one run on this machine; writes
bench/results/peers.json and peers.md (``--quick``: a smoke run at a tiny scale)."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from tests.servers import PostgresServer, start_postgres, start_redis

from bench.peers import baselines, report
from bench.peers.harness import Peer, Scale, measure, scratch_dir
from bench.servers import ROOT

QUICK = Scale(
    jobs=200, repeats=1, status_reads=200, pickups=10, list_calls=3, probe_jobs=50, run_seconds=2
)
SYSTEMS = ("Celery", "RQ", "Procrastinate", "Dramatiq", "jobtrail", "jobtrail-pg")


@contextmanager
def servers() -> Iterator[PostgresServer]:
    """This run's own Redis and PostgreSQL on free loopback ports; the peers' env points there."""
    redis_server, postgres = start_redis(), start_postgres()
    if redis_server is None or postgres is None:
        raise SystemExit("bench-peers needs redis-server and PostgreSQL: run `make system-deps`")
    try:
        os.environ["PEERS_REDIS_URL"] = redis_server.url()
        os.environ["PEERS_PG_CONNINFO"] = (
            f"host={postgres.host} port={postgres.port} user={postgres.user} dbname=procrastinate"
        )
        yield postgres
    finally:
        redis_server.stop()
        postgres.stop()


def make_peer(name: str, postgres: PostgresServer, scratch: Path) -> Peer:
    """The named system, set up on this run's servers (imported once their URLs are known)."""
    from bench.peers import celery_peer, dramatiq_peer, rq_peer, sql_peers

    stores = itertools.count()
    if name == "jobtrail":
        where = "a SQLite file (WAL, synchronous=NORMAL)"
        return sql_peers.JobtrailPeer(
            name, where, lambda: f"sqlite:///{scratch / f'jobtrail-{next(stores)}.db'}"
        )
    if name == "jobtrail-pg":
        where = "PostgreSQL"
        return sql_peers.JobtrailPeer(
            name, where, lambda: postgres.create_database(f"jobtrail_{next(stores)}")
        )
    if name == "Procrastinate":
        return sql_peers.ProcrastinatePeer(postgres)
    peers: dict[str, Callable[[], Peer]] = {
        "Celery": celery_peer.CeleryPeer,
        "RQ": rq_peer.RQPeer,
        "Dramatiq": dramatiq_peer.DramatiqPeer,
    }
    return peers[name]()


def floors(args: argparse.Namespace, scale: Scale, scratch: Path) -> dict[str, Any]:
    """Raw sqlite3 commits, and plain FastAPI beside `jobtrail serve` under wrk."""
    seconds = 2.0 if args.quick else 10.0
    found: dict[str, Any] = {
        "sqlite_commits_per_s": baselines.sqlite_commits(
            scratch / "raw", scale.jobs, scale.repeats
        ),
        "sqlite_job_rows_per_s": baselines.sqlite_job_rows(
            scratch / "rows", scale.jobs, scale.repeats
        ),
    }
    found["fastapi"] = vars(baselines.plain_fastapi(seconds))
    found["jobtrail_serve"] = vars(
        baselines.jobtrail_serve(f"sqlite:///{scratch / 'serve.db'}", seconds)
    )
    return found


def run(args: argparse.Namespace, scale: Scale) -> dict[str, Any]:
    """Every system's figures and the floors, as the JSON document."""
    scratch = scratch_dir()
    results: dict[str, Any] = {
        "run": {
            "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if args.quick else "full",
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "",
        },
        "scale": vars(scale) | {"owners": scale.owners},
        "systems": {},
    }
    load = os.getloadavg()[0]
    with servers() as postgres, ExitStack() as stack:
        for name in args.systems or SYSTEMS:
            peer = make_peer(name, postgres, scratch)
            stack.callback(peer.close)
            print(f"{name} {peer.version} ...", flush=True)
            figures = measure(peer, scale, scratch).as_dict()
            print("  " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items() if v), flush=True)
            results["systems"][name] = {
                "version": peer.version,
                "settings": peer.settings,
                "figures": figures,
            }
    results["baselines"] = {} if args.no_floors else floors(args, scale, scratch)
    results["run"]["note"] = (
        f"1-minute load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(f"logs and stores in {scratch}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny scale, one repeat")
    parser.add_argument("--jobs", type=int, help="jobs per measurement (default 5,000)")
    parser.add_argument("--repeats", type=int, help="runs whose median is kept (default 3)")
    parser.add_argument("--systems", action="append", choices=SYSTEMS, help="only these")
    parser.add_argument("--no-floors", action="store_true", help="skip raw sqlite3 and HTTP")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scale = QUICK if args.quick else Scale()
    scale = Scale(
        **(vars(scale) | {k: v for k, v in (("jobs", args.jobs), ("repeats", args.repeats)) if v})
    )
    results = run(args, scale)
    if "jobtrail" in results["systems"]:
        for path in report.write(results, args.out):
            print(f"wrote {path}")
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
