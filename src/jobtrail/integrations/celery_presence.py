"""The Celery workers of an installed app in jobtrail's registry of live workers (engine
``celery``): registered when a worker starts (``worker_init``), refreshed every heartbeat
interval, removed when it shuts down (``worker_shutdown``); each runs a webhook courier while
it lives, and takes its turn at evaluating the alert rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals
from celery.bootsteps import CLOSE, TERMINATE  # type: ignore[attr-defined]  # not in the stubs
from celery.worker import state

from jobtrail.alerting import Alerting
from jobtrail.courier import Courier
from jobtrail.maintenance import Maintenance, Periodic
from jobtrail.presence import Presence
from jobtrail.tracker import Tracker


@dataclass
class CeleryPresence:
    """Keeps this process's Celery worker (of ``app``) in the tracker's registry."""

    app: Celery
    tracker: Callable[[], Tracker]
    """The tracker now (the integration's tracker may be swapped, as tests do)."""
    tracked: Callable[[Any], bool]
    """Whether a task is mirrored into jobtrail (its name is listed as a kind)."""
    _beat: Maintenance | None = field(default=None, init=False)
    _presence: Presence | None = field(default=None, init=False)
    _courier: Courier | None = field(default=None, init=False)
    _alerting: Alerting | None = field(default=None, init=False)

    def on_worker_init(self, sender: Any = None, **kw: Any) -> None:
        """A worker of this app starts: register it and keep it registered."""
        if getattr(sender, "app", None) is not self.app:
            return
        if self._beat is not None:  # a worker of this app that stopped without telling
            self._stop()
        tracker = self.tracker()
        kinds = [n for n, t in self.app.tasks.items() if not n.startswith("celery.")]
        concurrency = getattr(sender, "concurrency", 0)
        store = tracker.runtime.store
        presence = Presence(
            store.workers,
            store.clock,
            store.database.outage,
            engine="celery",
            queues=_queues(self.app),
            kinds=[n for n in kinds if self.tracked(self.app.tasks[n])],
            concurrency=concurrency if isinstance(concurrency, int) else 0,
            running=lambda: len(state.active_requests),
            name=str(getattr(sender, "hostname", "") or "") or None,
        )
        interval = tracker.settings.heartbeat_interval

        def announce() -> None:
            if presence is self._presence and not _running(sender):  # it stopped untold
                self._presence = None
                presence.forget()
            elif presence is self._presence:
                presence.announce()

        alerting = Alerting.of(tracker.runtime, f"celery:{presence.id}")

        def evaluate_alerts() -> None:
            if presence is self._presence and _running(sender):
                alerting.evaluate()
            else:  # stopped (told or not): leave the store alone from now on
                alerting.stop()

        presence.announce()
        self._presence, self._alerting = presence, alerting
        outage, alert_interval = store.database.outage, tracker.settings.alert_interval
        beats = [
            Periodic(time.monotonic, interval, (announce,), outage),
            Periodic(time.monotonic, alert_interval, (evaluate_alerts,), outage),
        ]
        # A daemon: a process killed before ``worker_shutdown`` must still exit; its row then
        # only stops being live.
        step = min(1.0, interval, alert_interval)
        self._beat = Maintenance(beats, step, daemon=True).start()
        if tracker.settings.webhook_deliver:  # this worker delivers webhooks too
            self._courier = Courier.of(tracker.runtime).start()

    def on_worker_shutdown(self, sender: Any = None, **kw: Any) -> None:
        """The worker stops: remove it from the registry."""
        if getattr(sender, "app", None) is not self.app or self._beat is None:
            return
        self._stop()

    def _stop(self) -> None:
        """Stop announcing, and delete the row."""
        beat, presence, self._beat, self._presence = self._beat, self._presence, None, None
        courier, self._courier = self._courier, None
        if courier is not None:
            courier.stop(self.tracker().settings.grace_period)
        if beat is not None:
            beat.stop()
        alerting, self._alerting = self._alerting, None
        if alerting is not None:
            alerting.stop()
        if presence is not None:
            presence.forget()

    def connect(self) -> None:
        """Connect to Celery's worker signals (weakly: keep this object alive)."""
        signals.worker_init.connect(self.on_worker_init, weak=False)
        signals.worker_shutdown.connect(self.on_worker_shutdown, weak=False)


def _running(worker: Any) -> bool:
    """Whether a Celery worker has not begun to stop (a cold stop sends no signal)."""
    blueprint = getattr(worker, "blueprint", None)
    return getattr(blueprint, "state", None) not in (CLOSE, TERMINATE)


def _queues(app: Celery) -> list[str]:
    """The queues a worker of ``app`` consumes (set by ``-Q`` before ``worker_init``)."""
    consumed = getattr(app.amqp.queues, "consume_from", None) or {}
    return sorted(consumed) or [str(app.conf.task_default_queue)]
