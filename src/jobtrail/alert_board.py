"""AlertBoard (``tracker.alerts``): the alert rules and the alerts they raised, as the API, the
CLI and the dashboard read and change them — channels only ever as redacted labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtrail.alerts import AlertPage, AlertRule, AlertRuleInfo
from jobtrail.exceptions import UnknownAlertRule

if TYPE_CHECKING:
    from jobtrail.store.alerts import AlertStore

MAX_PAGE = 200


class AlertBoard:
    """Rules stored (from code or over the API) and the history of alerts."""

    def __init__(self, alerts: AlertStore) -> None:
        self._alerts = alerts

    def rules(self) -> list[AlertRuleInfo]:
        """Every stored rule, by name."""
        return self._alerts.rule_infos()

    def rule(self, name: str) -> AlertRuleInfo:
        """The stored rule ``name``; raises ``UnknownAlertRule``."""
        for info in self._alerts.rule_infos():
            if info.name == name:
                return info
        raise UnknownAlertRule(name)

    def save(self, rule: AlertRule) -> AlertRuleInfo:
        """Store a rule made over the API or CLI (source ``api``), replacing one of its name."""
        self._alerts.save_rule(rule, "api")
        return self.rule(rule.name)

    def delete(self, name: str) -> None:
        """Delete a rule and close its firing alerts silently; raises ``UnknownAlertRule``.
        (A rule declared in code comes back when a worker starts.)"""
        if not self._alerts.delete_rule(name):
            raise UnknownAlertRule(name)

    def page(
        self,
        *,
        rule: str | None = None,
        status: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> AlertPage:
        """Alerts newest first, firing and resolved (``status`` one of them), of ``rule``,
        with ids below ``before`` (the previous page's ``next_before``)."""
        limit = max(1, min(limit, MAX_PAGE))
        return self._alerts.page(rule=rule, status=status, before=before, limit=limit)
