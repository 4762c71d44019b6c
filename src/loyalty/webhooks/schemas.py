"""Webhook endpoints, delivery attempts and events as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

URL = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2000,
        description=(
            "Where events are POSTed: https:// only (http:// only inside "
            "LOYALTY_WEBHOOK_ALLOWED_NETWORKS); never a private or loopback address, "
            "never credentials."
        ),
    ),
]
EventTypes = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
    msgspec.Meta(max_length=64, description="Event types sent to it; null: every type."),
]
Description = Annotated[str, msgspec.Meta(max_length=500)]
AttemptStatus = Literal["pending", "succeeded", "failed"]


class CreateWebhookEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    url: URL
    event_types: EventTypes | None = None
    description: Description | None = None
    active: bool = True


class UpdateWebhookEndpoint(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent; ``event_types: null`` sends every type again."""

    url: URL | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookEndpoint(msgspec.Struct, frozen=True):
    id: uuid.UUID
    url: str
    event_types: list[str] | None
    description: str | None
    active: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint, frozen=True):
    """The endpoint and its signing secret (shown once: on create)."""

    secret: str


class WebhookEndpointEnvelope(msgspec.Struct, frozen=True):
    data: WebhookEndpoint


class CreatedWebhookEndpointEnvelope(msgspec.Struct, frozen=True):
    data: WebhookEndpointWithSecret


class WebhookEndpointPage(msgspec.Struct, frozen=True):
    data: list[WebhookEndpoint]
    next_cursor: str | None


class Secret(msgspec.Struct, frozen=True):
    secret: str


class SecretEnvelope(msgspec.Struct, frozen=True):
    data: Secret


class TestSent(msgspec.Struct, frozen=True):
    """The ``webhook.test`` event written (delivered to this endpoint only)."""

    event_id: uuid.UUID


class TestSentEnvelope(msgspec.Struct, frozen=True):
    data: TestSent


class DeliveryAttempt(msgspec.Struct, frozen=True):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    status: AttemptStatus
    trigger: Literal["scheduled", "manual"]
    response_status: int | None
    response_duration_ms: int | None
    response_body: str | None
    error: str | None
    scheduled_at: datetime
    attempted_at: datetime | None


class DeliveryAttemptEnvelope(msgspec.Struct, frozen=True):
    data: DeliveryAttempt


class DeliveryAttemptPage(msgspec.Struct, frozen=True):
    data: list[DeliveryAttempt]
    next_cursor: str | None


class Recover(msgspec.Struct, forbid_unknown_fields=True):
    since: datetime
    until: datetime | None = None


class Recovered(msgspec.Struct, frozen=True):
    events: int


class RecoveredEnvelope(msgspec.Struct, frozen=True):
    data: Recovered


class Event(msgspec.Struct, frozen=True):
    """An event: the same object in the feed and in a webhook's body."""

    id: uuid.UUID
    type: str
    timestamp: datetime
    sequence: int
    customer_id: str | None
    data: dict[str, Any]
    # Who caused it: user:<email>, api_key:<prefix>, system or import:<id>.
    actor: str = "system"


class EventPage(msgspec.Struct, frozen=True):
    data: list[Event]
    next_cursor: str
    has_more: bool
