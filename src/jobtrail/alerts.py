"""Alert rules and the alerts they raise, as values: conditions, their parameters and scopes
(channels are checked by ``channels.py``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.channels import check_channel
from jobtrail.exceptions import AlertRuleRefused
from jobtrail.jobs import JSON

DEFAULT_GROUP_WINDOW = 300.0
"""Seconds between two messages of one firing alert (its count grows in between)."""
MAX_CHANNELS = 10
MAX_NAME_CHARS = 200
MAX_LABELS = 20

EVENT_LIKE = frozenset({"failed", "worker_lost"})
"""Conditions made of occurrences, counted up while firing (the others are states)."""

# Each condition's parameters: name → (type, default, lowest value allowed).
_PARAMS: dict[str, dict[str, tuple[type, Any, float | None]]] = {
    "failed": {"include_partial": (bool, False, None)},
    "failure_rate": {
        "window": (float, 3600.0, 1.0),
        "threshold": (float, 0.2, 0.0),
        "min_count": (int, 10, 1),
    },
    "stalled": {},
    "queue_unconsumed": {"older_than": (float, 300.0, 0.0)},
    "queue_age": {"older_than": (float, 300.0, 0.0)},
    "schedule_missed": {"grace": (float, 60.0, 0.0), "schedule": (str, None, None)},
    "worker_lost": {},
    "webhook_disabled": {},
}
CONDITIONS = frozenset(_PARAMS)
"""The conditions a rule may watch."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AlertRule:
    """A condition watched over the jobs of a scope, and the channels told when it fires.

    Make one with ``AlertRule.of`` (or ``tracker.alert``), which checks it."""

    name: str
    condition: str
    channels: tuple[str, ...]
    params: Mapping[str, JSON] = field(default_factory=dict)
    kind: str | None = None
    queue: str | None = None
    owner: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True

    @classmethod
    def of(
        cls,
        name: str,
        condition: str,
        *,
        channels: list[str] | tuple[str, ...],
        kind: str | None = None,
        queue: str | None = None,
        owner: str | None = None,
        labels: Mapping[str, str] | None = None,
        enabled: bool = True,
        **params: JSON,
    ) -> AlertRule:
        """A checked rule; ``AlertRuleRefused`` says what is wrong with it."""
        _check_name(name)
        if condition not in CONDITIONS:
            raise AlertRuleRefused(f"unknown condition {condition!r}; one of {sorted(CONDITIONS)}")
        if isinstance(channels, str) or not 1 <= len(channels) <= MAX_CHANNELS:
            raise AlertRuleRefused(f"a rule needs a list of 1 to {MAX_CHANNELS} channel URLs")
        scope = {"kind": kind, "queue": queue, "owner": owner}
        for key, value in scope.items():
            if value is not None and not _is_text(value, 200):
                raise AlertRuleRefused(f"scope {key} must be a string of 1 to 200 characters")
        return cls(
            name,
            condition,
            tuple(check_channel(url) for url in channels),
            checked_params(condition, params),
            kind,
            queue,
            owner,
            _checked_labels(labels or {}),
            enabled,
        )

    @property
    def scope(self) -> dict[str, JSON]:
        """The jobs the rule watches (None: any), as stored and shown."""
        return {
            "kind": self.kind,
            "queue": self.queue,
            "owner": self.owner,
            "labels": dict(self.labels),
        }

    @property
    def group_window(self) -> float:
        """Seconds between two messages of one firing alert."""
        value = self.params.get("group_window", DEFAULT_GROUP_WINDOW)
        return float(value) if isinstance(value, int | float) else DEFAULT_GROUP_WINDOW

    def number(self, name: str) -> float:
        """A numeric parameter (its default when not given)."""
        value = self.params.get(name, _PARAMS[self.condition][name][1])
        assert isinstance(value, int | float)
        return float(value)

    @property
    def event_like(self) -> bool:
        """Whether the condition is made of occurrences (counted) rather than a state."""
        return self.condition in EVENT_LIKE


def checked_params(condition: str, given: Mapping[str, JSON]) -> dict[str, JSON]:
    """The parameters of a ``condition`` rule, checked and with their defaults filled in."""
    known = {**_PARAMS[condition], "group_window": (float, DEFAULT_GROUP_WINDOW, 0.0)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise AlertRuleRefused(
            f"{condition} takes no parameter {unknown[0]!r}; only {sorted(known)}"
        )
    params: dict[str, JSON] = {}
    for name, (kind, default, lowest) in known.items():
        params[name] = _param(name, given.get(name, default), kind, lowest)
    return params


def _param(name: str, value: JSON, kind: type, lowest: float | None) -> JSON:
    if value is None:
        return None
    if kind is bool:
        if not isinstance(value, bool):
            raise AlertRuleRefused(f"{name} must be true or false")
        return value
    if kind is str:
        if not _is_text(value, 200):
            raise AlertRuleRefused(f"{name} must be a string of 1 to 200 characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise AlertRuleRefused(f"{name} must be a number")
    if kind is int and value != int(value):
        raise AlertRuleRefused(f"{name} must be a whole number")
    if (lowest is not None and value < lowest) or abs(value) > 1e9:
        raise AlertRuleRefused(f"{name} must be at least {lowest} (and not absurdly large)")
    if name == "threshold" and value >= 1:
        raise AlertRuleRefused("threshold is a fraction below 1 (0.2: more than 20% failed)")
    return int(value) if kind is int else float(value)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", name):
        raise AlertRuleRefused(
            "a rule's name is letters, digits, '_', '-', '.', ':' (e.g. sync-failures)"
        )
    if len(name) > MAX_NAME_CHARS:
        raise AlertRuleRefused(f"a rule's name has at most {MAX_NAME_CHARS} characters")


def _is_text(value: object, longest: int) -> bool:
    """Whether ``value`` is a string of 1 to ``longest`` characters without control ones."""
    return isinstance(value, str) and 0 < len(value) <= longest and not _CONTROL.search(value)


def _checked_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(labels, Mapping) or len(labels) > MAX_LABELS:
        raise AlertRuleRefused(f"labels are an object of at most {MAX_LABELS} names and values")
    for key, value in labels.items():
        if not (_is_text(key, 100) and (value == "" or _is_text(value, 200))):
            raise AlertRuleRefused("each label is a name (1 to 100 characters) and a string value")
    return dict(labels)


@dataclass(frozen=True)
class AlertRuleInfo:
    """A stored rule as shown: its channels as redacted labels only."""

    name: str
    source: str
    condition: str
    params: dict[str, JSON]
    scope: dict[str, JSON]
    channels: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Alert:
    """One firing (or resolved) alert of a rule over one scope, e.g. ``kind=listing_sync``."""

    id: int
    rule: str
    scope_key: str
    status: str
    """``firing`` or ``resolved``."""
    summary: str
    count: int
    """Occurrences so far (failures, rescued jobs); for a state, how many jobs it holds now."""
    notified_count: int
    """The count the last message told."""
    first_at: datetime
    last_at: datetime
    notified_at: datetime
    resolved_at: datetime | None
    job_ids: list[str]
    """The most recent jobs concerned (at most ``RECENT_JOBS``)."""
    details: dict[str, JSON] | None = None


RECENT_JOBS = 20
"""Job ids an alert keeps (the newest)."""


@dataclass(frozen=True)
class AlertPage:
    """A page of alerts, newest first; ``next_before`` fetches the next (None: no more)."""

    alerts: list[Alert]
    next_before: int | None
