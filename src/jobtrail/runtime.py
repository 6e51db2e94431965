"""Runtime: the parts that run jobs — the store, the settings, the registered kinds and
schedules, the one submit path, the redactor and the one heartbeat — handed by the facade to
a worker, to work tracked in place and to the Celery integration, each of which takes only
what it uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobtrail.heartbeat import Heartbeat
    from jobtrail.redaction import Redactor
    from jobtrail.registry import Registry
    from jobtrail.settings import Settings
    from jobtrail.store import Store
    from jobtrail.submitter import Submitter


@dataclass(frozen=True, eq=False)
class Runtime:
    """What the code that runs jobs is handed (``Tracker.runtime``)."""

    store: Store
    settings: Settings
    registry: Registry
    submitter: Submitter
    redactor: Redactor
    heartbeat: Heartbeat
    """The one heartbeat of every job this process holds through this store."""
