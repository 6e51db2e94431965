"""The shapes of the webhook endpoints: subscription bodies (checked before anything is
stored), the subscription shown with its secret once, and the delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from jobtrail.subscriptions import MAX_FILTER_ENTRIES, MAX_LABELS
from jobtrail.web.schemas import Text
from jobtrail.webhooks import EVENT_TYPES, Delivery, Subscription

EventTypeName = Literal[EVENT_TYPES]  # type: ignore[valid-type]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
LabelKey = Annotated[Text, Field(min_length=1, max_length=100)]
LabelValue = Annotated[Text, Field(max_length=200)] | StrictBool | StrictInt | StrictFloat
Names = Annotated[list[Name] | None, Field(max_length=MAX_FILTER_ENTRIES)]
WebhookId = Annotated[str, Path(pattern=r"^whs_[0-9a-f]{1,60}$", description="The webhook's id.")]
DeliveryId = Annotated[
    str, Path(pattern=r"^msg_[0-9a-f]{1,60}$", description="The delivery's id (`webhook-id`).")
]
AfterQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[\w.:-]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Filters(_Body):
    description: Text | None = Field(None, max_length=1000)
    event_types: Annotated[list[EventTypeName] | None, Field(max_length=len(EVENT_TYPES))] = Field(
        None, description="Only these types (null: every type)."
    )
    kinds: Names = Field(None, description="Only jobs of these kinds (null: any).")
    queues: Names = Field(None, description="Only jobs on these queues (null: any).")
    labels: Annotated[dict[LabelKey, LabelValue] | None, Field(max_length=MAX_LABELS)] = Field(
        None, description="Only jobs with all of these labels (null: any)."
    )
    allow_private: StrictBool | None = Field(
        None, description="Admin tokens only: allow a loopback or private address."
    )


class SubscriptionRequest(_Filters):
    """A program subscribing to job events."""

    url: Text = Field(
        min_length=1,
        max_length=2048,
        description="Where to POST: http(s), resolving to a public address unless allowed.",
        examples=["https://example.com/hooks/jobtrail"],
    )
    owner: Name | None = Field(
        None, description="Only this owner's jobs (an owner token: its own, always)."
    )


class SubscriptionPatch(_Filters):
    """Changes to a subscription; fields left out stay as they are."""

    url: Text | None = Field(None, min_length=1, max_length=2048)
    enabled: StrictBool | None = Field(
        None, description="Turn deliveries off, or on again after the subscription was disabled."
    )


class SubscriptionWithSecret(BaseModel):
    """A subscription with its signing secret: shown at creation and rotation, never again."""

    webhook: Subscription
    secret: str = Field(description="`whsec_…`, for `standardwebhooks.Webhook(secret)`.")


class SubscriptionList(BaseModel):
    """Subscriptions by id; the next page starts after ``next_after``."""

    webhooks: list[Subscription]
    next_after: str | None


class DeliveryList(BaseModel):
    """Deliveries with their attempts (status, latency, response excerpt)."""

    deliveries: list[Delivery]
