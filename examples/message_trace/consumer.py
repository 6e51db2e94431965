"""Scrape requests from a Redis Stream read by a consumer group (standing in for a Pub/Sub
subscription): each message becomes a job keyed by its message id, then is acknowledged.

A message is redelivered when its consumer died before the ack (another consumer claims it
after ``claim_idle`` seconds) or when the publisher sends it again with the same
``message_id`` field; either way jobtrail's idempotency key returns the existing trace.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from pydantic import BaseModel, ValidationError

from examples.message_trace.traces import JobType
from jobtrail import Tracker

STREAM, GROUP = "scrape-requests", "tracer"
log = logging.getLogger(__name__)


class Message(BaseModel):
    """A scrape request as published."""

    job_type: JobType = "property_scrape"
    url: str
    line_user_id: str
    check_only: bool = False
    message_id: str | None = None


class Consumer:
    """One member of the consumer group, run in a thread until ``stop`` is set."""

    def __init__(self, client: redis.Redis, tracker: Tracker, name: str, claim_idle: float):
        self.client, self.tracker, self.name = client, tracker, name
        self.claim_idle_ms = int(claim_idle * 1000)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        while not self.stop.is_set():
            for entry_id, fields in self.deliveries():
                self.handle(entry_id, fields)
                self.client.xack(STREAM, GROUP, entry_id)

    def deliveries(self) -> list[tuple[str, dict[str, str]]]:
        """Messages a dead consumer left unacknowledged, then new ones (waiting up to 0.5 s)."""
        claimed: Any = self.client.xautoclaim(STREAM, GROUP, self.name, self.claim_idle_ms)
        fresh: Any = self.client.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=100, block=500)
        return [*claimed[1], *(entry for _, entries in fresh or () for entry in entries)]

    def handle(self, entry_id: str, fields: dict[str, Any]) -> None:
        """Record the message's trace (the existing one for a redelivery)."""
        try:
            message = Message.model_validate(fields)
        except ValidationError as exc:
            log.warning("dropping malformed message %s: %s", entry_id, exc)
            return
        self.tracker.submit(
            message.job_type,
            message.model_dump(include={"url", "line_user_id", "check_only"}),
            key=message.message_id or entry_id,
            trigger="message",
            labels={"line_user_id": message.line_user_id},
        )
