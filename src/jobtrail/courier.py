"""Courier: the one thread per process that delivers webhooks — it fans the outbox out into
deliveries, claims the due ones under a lease, sends each signed per the Standard Webhooks
spec to a vetted address, and records the attempt (delivered, retried with backoff, or failed
and its subscription disabled)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jobtrail.destinations import Destination, host_header, pinned_url, vet
from jobtrail.documents import job_document
from jobtrail.exceptions import StoreError, WebhookRefused
from jobtrail.jobs import JSON, Job
from jobtrail.logs import logger
from jobtrail.webhooks import Attempt, DeliveryStatus, Outgoing, Sent

if TYPE_CHECKING:
    from jobtrail.redaction import Redactor
    from jobtrail.runtime import Runtime
    from jobtrail.settings import Settings
    from jobtrail.store.database import Database
    from jobtrail.store.deliveries import DeliveryStore

log = logger("jobtrail.webhooks")

BATCH = 20
"""Deliveries claimed per turn."""
MIN_TURN_SECONDS = 0.05
"""The shortest time between two turns woken by commits: a busy store wakes the courier at
most this often, not at every commit."""
MAX_BACKOFF_SECONDS = 3600.0
EXCERPT_BYTES = 1024
"""How much of a receiver's answer is read and kept."""
PURGE_EVERY_SECONDS = 3600.0
BUSY_PAUSE_SECONDS = 0.1
"""The least pause between two batches while the process runs jobs."""
BUSY_SHARE = 0.1
"""The share of its time the courier works while the process runs jobs (it pauses nine
times as long as its last turn took): deliveries fall behind a burst of jobs, and catch up
when it ends, instead of slowing the jobs down."""


@dataclass(frozen=True)
class Answer:
    """What a receiver said: its status and the start of its body."""

    status_code: int
    excerpt: str


class Courier:
    """Delivers this store's webhooks from one daemon thread (``start``/``stop``); ``turn``
    is one round of it (tests call it directly)."""

    def __init__(
        self,
        deliveries: DeliveryStore,
        database: Database,
        settings: Settings,
        redactor: Redactor,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """``busy``: whether this process is running jobs now; while it is, the courier
        works at most ``BUSY_SHARE`` of the time, so that jobs keep their pace and the backlog
        goes out when they are done."""
        self._busy = busy
        self._deliveries = deliveries
        self._database = database
        self._settings = settings
        self._redactor = redactor
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._purge_due = time.monotonic()
        self.send_window = settings.webhook_timeout
        """A batch's sends start within this many seconds of its claim; the rest are handed
        back."""
        self.lease_seconds = self.send_window + 3 * settings.webhook_timeout + 1.0
        """How long a claim holds its deliveries: longer than the batch's sends can take (the
        last starts within ``send_window``; each connects, writes and reads within
        ``webhook_timeout``), so only a courier that died loses them to another."""

    @classmethod
    def of(cls, runtime: Runtime, busy: Callable[[], bool] = lambda: False) -> Courier:
        """The courier of ``runtime``'s store."""
        store = runtime.store
        deliveries = store.webhooks.deliveries
        return cls(deliveries, store.database, runtime.settings, runtime.redactor, busy)

    def start(self) -> Courier:
        """Start the thread; returns at once."""
        self._database.watch()  # other processes' commits wake it too
        self._thread = threading.Thread(target=self._loop, name="jobtrail-courier", daemon=True)
        self._thread.start()
        return self

    def stop(self, grace_period: float) -> None:
        """Stop after the delivery in flight, waiting at most ``grace_period`` seconds; one
        abandoned then is sent again by a courier once its lease expires (at least once)."""
        self._halt.set()
        self._database.changes.ring()
        if self._thread is not None:
            self._thread.join(grace_period)
        if self._client is not None and (self._thread is None or not self._thread.is_alive()):
            self._client.close()

    def _loop(self) -> None:
        changes = self._database.changes
        while not self._halt.is_set():
            seen = changes.rung
            started = time.monotonic()
            if self._guarded_turn():
                if self._busy():  # a share of the process's time, the jobs keep the rest
                    took = time.monotonic() - started
                    self._halt.wait(max(BUSY_PAUSE_SECONDS, took * (1 / BUSY_SHARE - 1)))
                continue
            changes.wait(seen, self._settings.webhook_poll_interval)
            self._halt.wait(MIN_TURN_SECONDS)

    def _guarded_turn(self) -> int:
        try:
            return self.turn()
        except StoreError as exc:
            if not self._database.outage.noted(exc, "webhook delivery"):
                log.warning("webhook delivery failed", error=str(exc))
        except Exception:  # the thread must outlive any one failure
            log.exception("webhook delivery failed")
        return 0

    def turn(self) -> int:
        """Fan the outbox out, then send the due deliveries and record the attempts (one
        transaction for the batch); returns how many deliveries it made and sent."""
        made = self._deliveries.fan_out(self._document)
        self._purge_now_and_then()
        sent: list[Sent] = []
        claimed = self._deliveries.claim_due(BATCH, self.lease_seconds)
        until = time.monotonic() + self.send_window
        for outgoing in claimed:
            if self._halt.is_set() or time.monotonic() > until:
                break  # the rest is released below, for whichever courier comes first
            sent.append(self.send(outgoing))
        unsent = claimed[len(sent) :]
        recorded = self._database.through_outage(lambda: self._deliveries.record(sent, unsent))
        for one, kept in zip(sent, recorded, strict=True):
            if kept and one.status is DeliveryStatus.FAILED:
                log.warning(
                    "webhook subscription disabled: a delivery kept failing",
                    subscription_id=one.outgoing.delivery.subscription_id,
                    delivery_id=one.outgoing.delivery.id,
                    error=one.attempt.error,
                )
        return made + len(sent)

    def send(self, outgoing: Outgoing) -> Sent:
        """Send one delivery: the attempt, and what follows from it (recorded by ``turn``)."""
        at = self._database.clock()
        started = time.monotonic()
        answer, error = self._post(outgoing, at)
        attempt = Attempt(
            at=at,
            status_code=None if answer is None else answer.status_code,
            duration=time.monotonic() - started,
            error=error,
            response=None if answer is None else answer.excerpt,
        )
        status, next_at = self._after(outgoing, attempt)
        return Sent(outgoing, attempt, status, next_at)

    def _after(
        self, outgoing: Outgoing, attempt: Attempt
    ) -> tuple[DeliveryStatus, datetime | None]:
        """Delivered; or pending again after a backoff, up to the end of the retry window;
        or failed, once the window is over."""
        if attempt.error is None:
            return DeliveryStatus.DELIVERED, None
        deadline = outgoing.retry_from + timedelta(seconds=self._settings.webhook_retry_for)
        if attempt.at >= deadline:
            return DeliveryStatus.FAILED, None
        return DeliveryStatus.PENDING, min(attempt.at + self._backoff(outgoing), deadline)

    def _backoff(self, outgoing: Outgoing) -> timedelta:
        tries = min(outgoing.delivery.attempts, 30)
        seconds = min(self._settings.webhook_backoff * 2**tries, MAX_BACKOFF_SECONDS)
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))

    def _post(self, outgoing: Outgoing, at: datetime) -> tuple[Answer | None, str | None]:
        """POST the delivery: the answer (None: none came) and what went wrong, if anything."""
        import httpx

        allow = outgoing.allow_private or self._settings.webhook_allow_private
        body = json.dumps(outgoing.delivery.payload, separators=(",", ":")).encode()
        try:
            destination = vet(outgoing.url, allow)  # again: the name may point elsewhere now
            answer = self._exchange(destination, signed_headers(outgoing, at, body), body)
        except WebhookRefused as exc:
            return None, str(exc)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= answer.status_code < 300:
            return answer, None
        return answer, f"HTTP {answer.status_code}"

    def _exchange(self, destination: Destination, headers: dict[str, str], body: bytes) -> Answer:
        """The request, connected to a vetted address (the next one if it refuses) with the
        name kept for the Host header and TLS; at most ``EXCERPT_BYTES`` of the answer read."""
        import httpx

        client = self._http()
        headers = headers | {"host": host_header(destination)}
        extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
        for n, address in enumerate(destination.addresses):
            url = pinned_url(destination, address)
            try:
                request = client.build_request(
                    "POST", url, content=body, headers=headers, extensions=extensions
                )
                response = client.send(request, stream=True)
            except httpx.ConnectError:
                if n == len(destination.addresses) - 1:
                    raise
                continue
            try:
                return Answer(response.status_code, _excerpt(response))
            finally:
                response.close()
        raise AssertionError("unreachable: vet() returns at least one address")

    def _http(self) -> Any:
        import httpx

        if self._client is None:
            timeout = self._settings.webhook_timeout
            self._client = httpx.Client(
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: the vetted address is it
            )
        return self._client

    def _document(self, job: Job) -> JSON:
        return job_document(job, self._redactor)

    def _purge_now_and_then(self) -> None:
        """Delete finished deliveries older than ``retention_other_days``, hourly."""
        if time.monotonic() < self._purge_due:
            return
        self._purge_due = time.monotonic() + PURGE_EVERY_SECONDS
        days = self._settings.retention_other_days
        before = self._database.clock() - timedelta(days=days)
        while self._deliveries.purge(before) > 0 and not self._halt.is_set():
            pass


def signed_headers(outgoing: Outgoing, at: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers: the delivery's id, the time, and one signature per
    secret in force (the new and, during a rotation's overlap, the previous)."""
    from standardwebhooks import Webhook

    msg_id = outgoing.delivery.id
    signatures = [Webhook(secret).sign(msg_id, at, body) for secret in outgoing.secrets]
    return {
        "content-type": "application/json",
        "user-agent": "jobtrail-webhooks",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def _excerpt(response: Any) -> str:
    taken = b""
    for chunk in response.iter_bytes():
        taken += chunk
        if len(taken) >= EXCERPT_BYTES:
            break
    return taken[:EXCERPT_BYTES].decode("utf-8", "replace")
