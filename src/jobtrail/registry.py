"""Registry: the kinds, schedules and startup jobs an application registered — what its
workers run and submit, kept apart from the facade that registers them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobtrail.exceptions import UnknownKind, UnknownSchedule
from jobtrail.jobs import JSON

if TYPE_CHECKING:
    from jobtrail.alerts import AlertRule
    from jobtrail.kinds import JobKind
    from jobtrail.scheduler import Schedule


@dataclass(frozen=True)
class StartupJob:
    """A job submitted once per deployment start (``Tracker.on_startup``)."""

    kind: str
    payload: Mapping[str, JSON]
    owner: str | None = None


@dataclass
class Registry:
    """What ``@tracker.job``, ``schedule``, ``on_startup`` and ``alert`` registered."""

    kinds: dict[str, JobKind] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    startup: list[StartupJob] = field(default_factory=list)
    alerts: dict[str, AlertRule] = field(default_factory=dict)

    def kind_of(self, kind: str) -> JobKind:
        """The registered kind named ``kind``; raises ``UnknownKind``."""
        try:
            return self.kinds[kind]
        except KeyError:
            raise UnknownKind(kind, self.kinds) from None

    def schedule_of(self, name: str) -> Schedule:
        """The registered schedule named ``name``; raises ``UnknownSchedule``."""
        try:
            return self.schedules[name]
        except KeyError:
            raise UnknownSchedule(name) from None
