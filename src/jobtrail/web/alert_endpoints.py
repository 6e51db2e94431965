"""``/alerts`` and ``/alert-rules``: the alert history and the rules, for admin tokens only
(alerts span every owner); channels are shown as redacted labels, never as URLs."""

# No ``from __future__ import annotations``: FastAPI reads the caller dependency evaluated.

from typing import Annotated, Literal, TypeAlias

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from jobtrail.alerts import MAX_CHANNELS, AlertPage, AlertRule, AlertRuleInfo
from jobtrail.exceptions import AlertRuleRefused, NotAllowed
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal
from jobtrail.web.schemas import BODY, NO_NUL

RuleName = Annotated[str, Path(max_length=200, pattern=NO_NUL)]
Text = Annotated[str, Field(max_length=200)]
Param = bool | int | float | str | None
Condition = Literal[
    "failed",
    "failure_rate",
    "stalled",
    "queue_unconsumed",
    "queue_age",
    "schedule_missed",
    "worker_lost",
    "webhook_disabled",
]
# Checked by ``AlertRule.of``, not by the schema: a schema error echoes its input, and a
# channel URL holds a secret.
Channel = str


class AlertRuleRequest(BaseModel):
    """A rule to store (replacing one of the same name): a condition over a scope, told to
    channels (apprise URLs, kept secret once stored)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", examples=["sync-failures"]
    )
    condition: Condition = Field(examples=["failed"])
    channels: list[Channel] = Field(
        description=f"1 to {MAX_CHANNELS} apprise URLs", examples=[["mailto://smtp.example.com"]]
    )
    kind: Text | None = None
    queue: Text | None = None
    owner: Text | None = None
    labels: dict[Text, Text] | None = Field(default=None, max_length=20)
    params: dict[Text, Param] = Field(
        default_factory=dict,
        max_length=10,
        description="The condition's parameters, and group_window (seconds between messages)",
        examples=[{"group_window": 300}],
    )
    enabled: bool = True


def add_alert_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add the alert endpoints to ``router``, their callers admitted through ``gate``."""

    def admin(caller: Annotated[Principal, Depends(gate.caller)]) -> Principal:
        if not caller.admin:
            raise NotAllowed("alerts and alert rules need an admin token")
        return caller

    Admin: TypeAlias = Annotated[Principal, Depends(admin)]

    @router.get("/alerts", response_model=AlertPage, tags=["alerts"])
    def list_alerts(
        caller: Admin,
        rule: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
        status: Literal["firing", "resolved"] | None = None,
        before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> AlertPage:
        """Alerts newest first, firing and resolved: rule, scope, count, first, last and
        resolved times, recent job ids. ``before``: the previous page's ``next_before``."""
        return tracker.alerts.page(rule=rule, status=status, before=before, limit=limit)

    @router.get("/alert-rules", response_model=list[AlertRuleInfo], tags=["alerts"])
    def list_rules(caller: Admin) -> list[AlertRuleInfo]:
        """Every stored rule (declared in code, or made here), channels as labels."""
        return tracker.alerts.rules()

    @router.get("/alert-rules/{name}", response_model=AlertRuleInfo, tags=["alerts"])
    def get_rule(name: RuleName, caller: Admin) -> AlertRuleInfo:
        """One stored rule; 404 if none has this name."""
        return tracker.alerts.rule(name)

    @router.post(
        "/alert-rules",
        status_code=201,
        response_model=AlertRuleInfo,
        responses=BODY,
        tags=["alerts"],
    )
    def save_rule(body: AlertRuleRequest, caller: Admin) -> AlertRuleInfo:
        """Store a rule (source ``api``), replacing one of its name; 422 with the reason for
        a rule that cannot work (nothing stored)."""
        taken = sorted(set(body.params) & set(AlertRuleRequest.model_fields))
        if taken:
            raise AlertRuleRefused(f"{taken[0]!r} is a field of the rule, not a parameter")
        rule = AlertRule.of(
            body.name,
            body.condition,
            channels=body.channels,
            kind=body.kind,
            queue=body.queue,
            owner=body.owner,
            labels=body.labels,
            enabled=body.enabled,
            **body.params,
        )
        return tracker.alerts.save(rule)

    @router.delete("/alert-rules/{name}", status_code=204, tags=["alerts"])
    def delete_rule(name: RuleName, caller: Admin) -> Response:
        """Delete a rule; its firing alerts close without a message. A rule declared in code
        comes back when a worker starts."""
        tracker.alerts.delete(name)
        return Response(status_code=204)
