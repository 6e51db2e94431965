"""``make example-document_ingest [REMOTE=1]``: Redis, the fake document store, the API and
Celery workers on loopback, then the demo documents; Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import os

import httpx

from examples.launcher import free_port, processes, redis_server, run_until_interrupted

DEMO = [
    {"document_name": "handbook-300.pdf", "document_type": "pdf"},
    {"document_name": "quarterly-report.docx", "document_type": "docx", "priority": "HIGH"},
    {"document_name": "contract-corrupt.pdf", "document_type": "pdf"},
    {"document_name": "flaky-notes.txt", "document_type": "txt", "priority": "LOW"},
    {"document_name": "invoice-scan-40.png", "document_type": "scan", "priority": "URGENT"},
]
WORKER = ("celery", "-A", "examples.document_ingest.tasks", "worker", "--loglevel", "INFO")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--remote", action="store_true", help="also run a remote-queue worker")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    with redis_server() as broker:
        upstream_port = free_port()
        env = {
            "JOBTRAIL_DATABASE_URL": os.environ.get(
                "JOBTRAIL_DATABASE_URL", "sqlite:///document_ingest.db"
            ),
            "DOCUMENT_INGEST_BROKER_URL": broker,
            "DOCUMENT_INGEST_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        }
        with processes(env) as group:
            group.serve("examples.document_ingest.upstream:app", upstream_port)
            base = group.serve("examples.document_ingest.app:app", args.port)
            group.start(*WORKER, "-Q", "documents", "-c", "2", "-n", "documents@%h")
            if args.remote:
                group.start(*WORKER, "-Q", "remote", "-c", "1", "-n", "remote@%h")
            for document in DEMO:
                httpx.post(f"{base}/api/v1/documents", json=document, headers={"X-User-Id": "demo"})
            run_until_interrupted(
                f"document_ingest: {base}/api/v1/jobs (header X-User-Id: demo), "
                f"dashboard {base}/jobtrail/, API docs {base}/docs"
            )


if __name__ == "__main__":
    main()
