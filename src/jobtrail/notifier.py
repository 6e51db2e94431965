"""Notifier: the thread that sends pending alert notifications through apprise, each taken by
one process at a time, retried with backoff, their channel URLs never logged or stored in an
error."""

from __future__ import annotations

import threading

from jobtrail.channels import apprise as load_apprise
from jobtrail.channels import scrub, speaking_to
from jobtrail.exceptions import StoreError
from jobtrail.logs import logger
from jobtrail.store.alerts import AlertStore, Pending
from jobtrail.store.outage import Outage

log = logger("jobtrail.alerts")

SEND_SECONDS = 60.0
"""How long a send may take before another process may take the notification over."""
MAX_ATTEMPTS = 12
"""Attempts before a notification is given up (some 40 minutes of backoff)."""
STOP_WAIT = 5.0
"""Seconds ``stop`` waits for a send in progress."""
IDLE_WAIT = 1.0
"""Seconds the thread sleeps when not woken (retries come due meanwhile)."""


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 2, 4, 8 … 600."""
    return float(min(2**attempts, 600))


def send(url: str, title: str, body: str) -> str | None:
    """Send one message to the channel ``url``; None when sent, else why not — the URL's
    secrets scrubbed from what apprise said."""
    apprise = load_apprise()
    app = apprise.Apprise()
    with speaking_to(url):
        added = app.add(url)
    if not added:
        return "not a channel URL apprise can send to"
    capture = apprise.LogCapture(level=apprise.logging.WARNING)
    with capture as output, speaking_to(url):
        sent = app.notify(title=title, body=body)
    if sent:
        return None
    said = [line for line in output.getvalue().splitlines() if line.strip()]
    return scrub(said[-1] if said else "the channel refused the message", url)


class Notifier:
    """Sends due notifications in a thread of its own, so that a slow channel never holds up
    the evaluation or the worker's maintenance; woken when new ones are written."""

    def __init__(self, alerts: AlertStore, outage: Outage) -> None:
        self.alerts = alerts
        self.outage = outage
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread unless it runs."""
        with self._lock:
            if self._thread is None and not self._halt.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="jobtrail-alerts", daemon=True
                )
                self._thread.start()

    def wake(self) -> None:
        """Look for due notifications now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (after the send it is in, up to ``STOP_WAIT``)."""
        self._halt.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A send in progress may take a channel's timeouts; the thread is a daemon, and a
            # notification claimed but not recorded is sent again once its claim lapses.
            thread.join(STOP_WAIT)

    def _loop(self) -> None:
        while not self._halt.is_set():
            self._wake.clear()
            try:
                self.send_due()
            except StoreError as exc:
                if not self.outage.noted(exc, "alert notifications"):
                    log.warning("sending alert notifications failed", error=str(exc))
            except Exception as exc:  # the thread outlives any one failure
                log.warning("sending alert notifications failed", error=str(exc))
            self._wake.wait(IDLE_WAIT)

    def send_due(self) -> int:
        """Send every due notification this process can take; returns how many were sent."""
        sent = 0
        for pending in self.alerts.due():
            if self._halt.is_set():
                break
            if self.alerts.claim(pending.id, SEND_SECONDS):
                sent += self._send(pending)
        return sent

    def _send(self, pending: Pending) -> int:
        url = self.alerts.channel(pending.rule, pending.channel_index)
        if url is None:
            self.alerts.attempt_failed(pending.id, "the rule or its channel was removed", None)
            return 0
        try:
            error = send(url, pending.title, pending.body)
        except Exception as exc:  # a channel's library failing is one failed attempt
            error = scrub(f"{type(exc).__name__}: {exc}", url)
        if error is None:
            self.alerts.sent(pending.id)
            return 1
        attempts = pending.attempts + 1
        retry = None if attempts >= MAX_ATTEMPTS else backoff(attempts)
        self.alerts.attempt_failed(pending.id, error, retry)
        log.warning(
            "alert notification failed",
            rule=pending.rule,
            channel=pending.channel,
            attempt=attempts,
            retry_in=retry,
            error=error,
        )
        return 0
