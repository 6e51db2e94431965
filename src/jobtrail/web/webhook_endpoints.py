"""The webhook endpoints: subscriptions (an owner token's own, an admin's any), secret
rotation, the delivery logs of a subscription and of a job, and replay."""

# No ``from __future__ import annotations``: FastAPI reads the caller dependency evaluated.

from typing import Annotated, Any, TypeAlias

from fastapi import APIRouter, Depends, Query, Response

from jobtrail.exceptions import NotAllowed
from jobtrail.tracker import Tracker
from jobtrail.web.auth import Gate, Principal, visible
from jobtrail.web.schemas import BODY, JobId
from jobtrail.web.webhook_schemas import (
    AfterQuery,
    DeliveryId,
    DeliveryList,
    SubscriptionList,
    SubscriptionPatch,
    SubscriptionRequest,
    SubscriptionWithSecret,
    WebhookId,
)
from jobtrail.webhooks import Delivery, Subscription

TAGS: list[str | Any] = ["webhooks"]


def owner_of(requested: str | None, caller: Principal) -> str | None:
    """The owner a subscription gets: an owner token's own, always."""
    if caller.owner is not None and requested not in (None, caller.owner):
        raise NotAllowed(f"this token cannot subscribe to the jobs of owner {requested!r}")
    return caller.owner if caller.owner is not None else requested


def _private(allow: bool | None, caller: Principal) -> bool:
    if allow and not caller.admin:
        raise NotAllowed("only an admin token may allow private addresses")
    return bool(allow)


def add_webhook_routes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    """Add the ``/webhooks`` endpoints and ``GET /jobs/{id}/deliveries`` to ``router``."""
    _add_subscriptions(router, tracker, gate)
    _add_reads(router, tracker, gate)
    _add_changes(router, tracker, gate)
    _add_deliveries(router, tracker, gate)


def _add_subscriptions(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    hooks = tracker.webhooks

    @router.post(
        "/webhooks",
        status_code=201,
        response_model=SubscriptionWithSecret,
        responses=BODY,
        tags=TAGS,
    )
    def create_webhook(body: SubscriptionRequest, caller: Caller) -> SubscriptionWithSecret:
        """Subscribe a URL to job events; the answer holds the signing secret, shown only
        this once. An owner token subscribes to its own jobs only."""
        subscription, secret = hooks.subscribe(
            body.url,
            owner=owner_of(body.owner, caller),
            event_types=body.event_types,
            kinds=body.kinds,
            queues=body.queues,
            labels=body.labels,
            description=body.description,
            allow_private=_private(body.allow_private, caller),
            actor=caller.name,
        )
        return SubscriptionWithSecret(webhook=subscription, secret=secret)


def _add_reads(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    hooks = tracker.webhooks

    @router.get("/webhooks", response_model=SubscriptionList, tags=TAGS)
    def list_webhooks(
        caller: Caller,
        after: AfterQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> SubscriptionList:
        """The subscriptions this token may see, by id; page with ``after``."""
        found = hooks.list(owner=caller.owner, after=after or None, limit=limit)
        last = found[-1].id if len(found) == limit else None
        return SubscriptionList(webhooks=found, next_after=last)

    @router.get("/webhooks/{webhook_id}", response_model=Subscription, tags=TAGS)
    def get_webhook(webhook_id: WebhookId, caller: Caller) -> Subscription:
        """One subscription (never its secret)."""
        return hooks.get(webhook_id, caller.owner)


def _add_changes(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    hooks = tracker.webhooks

    @router.patch("/webhooks/{webhook_id}", response_model=Subscription, responses=BODY, tags=TAGS)
    def change_webhook(
        webhook_id: WebhookId, body: SubscriptionPatch, caller: Caller
    ) -> Subscription:
        """Change a subscription's URL, filters or ``enabled``; checked as at creation."""
        changes = body.model_dump(exclude_unset=True)
        for name in ("url", "enabled", "allow_private"):  # null: left as it is
            if name in changes and changes[name] is None:
                del changes[name]
        if "allow_private" in changes:
            _private(changes["allow_private"], caller)
        return hooks.update(webhook_id, changes, caller.owner)

    @router.delete("/webhooks/{webhook_id}", status_code=204, tags=TAGS)
    def delete_webhook(webhook_id: WebhookId, caller: Caller) -> Response:
        """Delete a subscription; its delivery log stays until retention purges it."""
        hooks.delete(webhook_id, caller.owner)
        return Response(status_code=204)

    @router.post("/webhooks/{webhook_id}/rotate", response_model=SubscriptionWithSecret, tags=TAGS)
    def rotate_secret(webhook_id: WebhookId, caller: Caller) -> SubscriptionWithSecret:
        """A new signing secret, shown this once; the old one keeps signing beside it for
        the rotation overlap, so receivers switch without missing a delivery."""
        subscription, secret = hooks.rotate(webhook_id, caller.owner)
        return SubscriptionWithSecret(webhook=subscription, secret=secret)


def _add_deliveries(router: APIRouter, tracker: Tracker, gate: Gate) -> None:
    Caller: TypeAlias = Annotated[Principal, Depends(gate.caller)]
    hooks = tracker.webhooks

    @router.get("/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, tags=TAGS)
    def webhook_deliveries(
        webhook_id: WebhookId,
        caller: Caller,
        before: AfterQuery = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> DeliveryList:
        """A subscription's deliveries, newest first; page with ``before`` (a delivery id)."""
        found = hooks.deliveries(webhook_id, caller.owner, before or None, limit)
        return DeliveryList(deliveries=found)

    @router.get("/jobs/{job_id}/deliveries", response_model=DeliveryList, tags=TAGS)
    def job_deliveries(job_id: JobId, caller: Caller) -> DeliveryList:
        """The job's delivery log: each delivery in event order with every attempt (status,
        latency, the answer's first KiB). An owner token sees its own subscriptions'."""
        visible(tracker, job_id, caller)
        return DeliveryList(deliveries=hooks.job_deliveries(job_id, caller.owner))

    @router.post(
        "/webhooks/deliveries/{delivery_id}/replay",
        status_code=202,
        response_model=Delivery,
        tags=TAGS,
    )
    def replay_delivery(delivery_id: DeliveryId, caller: Caller) -> Delivery:
        """Send a delivery again with the same ``webhook-id`` and body (a deduplicating
        receiver counts it once)."""
        return hooks.replay(delivery_id, caller.owner)
