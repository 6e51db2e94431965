"""The Celery side: the app (Redis broker), its jobtrail tracker and the staged ingestion task.

Start a worker with ``celery -A examples.document_ingest.tasks worker -Q documents`` (and
``-Q remote`` for the documents routed to remote workers).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from urllib.parse import quote

import httpx
import redis
from celery import Celery

import jobtrail
from jobtrail.integrations.celery import TrackedTask, install

BROKER_URL = os.environ.get("DOCUMENT_INGEST_BROKER_URL", "redis://127.0.0.1:6379/0")
UPSTREAM_URL = os.environ.get("DOCUMENT_INGEST_UPSTREAM_URL", "http://127.0.0.1:8101")
DIMENSIONS = 64
EMBED_ROUNDS = 4000
"""Hash rounds per chunk: the fake embedding costs real CPU (a few ms a chunk)."""

tracker = jobtrail.Tracker()  # JOBTRAIL_DATABASE_URL: PostgreSQL when workers run elsewhere
celery = Celery("document_ingest", broker=BROKER_URL)
celery.conf.update(
    task_default_queue="documents",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options={"queue_order_strategy": "priority"},
)
install(celery, tracker)


class UpstreamBusy(Exception):
    """The document store answered 5xx: worth another try."""


def embed(text: str) -> list[float]:
    """A deterministic, CPU-bound stand-in for an embedding model."""
    digest = text.encode()
    for _ in range(EMBED_ROUNDS):
        digest = hashlib.blake2b(digest).digest()
    return [(b - 128) / 128 for b in hashlib.shake_256(digest).digest(DIMENSIONS)]


@celery.task(base=TrackedTask, bind=True, name="ingest_document", max_retries=3)
def ingest_document(
    self: TrackedTask,
    document_id: str,
    document_name: str,
    document_type: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """download → parse → chunk → embed → store, each stage a band of the percentage."""
    self.stage("download", start=0, end=10, message=f"downloading {document_name}")
    response = httpx.get(f"{UPSTREAM_URL}/documents/{quote(document_name)}", timeout=30)
    if response.status_code >= 500:  # transient: the job shows a retry, not a failure
        raise self.retry(countdown=0.5, exc=UpstreamBusy(f"upstream {response.status_code}"))
    response.raise_for_status()
    self.stage("parse", start=10, end=20, message=f"parsing {document_type}")
    text = response.content.decode("utf-8")  # a corrupt document fails here
    self.stage("chunk", start=20, end=30)
    chunks = [p for p in text.split("\n\n") if p.strip()]
    self.stage("embed", start=30, end=95, message=f"embedding {len(chunks)} chunks")
    self.set_total(len(chunks))
    vectors = {}
    for n, chunk in enumerate(chunks):
        self.check()  # a cancel from the API stops here
        vectors[str(n)] = json.dumps(embed(chunk))
        self.advance()
    self.stage("store", start=95, end=100, message="storing vectors")
    with redis.Redis.from_url(BROKER_URL) as store:
        store.delete(f"vectors:{document_id}")
        if vectors:
            store.hset(f"vectors:{document_id}", mapping=vectors)
    summary = f"stored {len(chunks)} chunks of {document_name} as {DIMENSIONS}-dim vectors"
    self.progress(message=summary)
    return {"chunks": len(chunks), "dimensions": DIMENSIONS, "metadata": metadata}
