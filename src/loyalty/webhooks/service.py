"""Webhook endpoints: register, change, rotate the secret, test, read the
attempts log, resend and recover."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.cursors import cursor_value, encode_cursor
from loyalty.db.types import utc_now
from loyalty.errors import ConflictError, NotFoundError, ValidationFailedError
from loyalty.events import repository as events
from loyalty.events.types import KNOWN, WEBHOOK_TEST
from loyalty.ids import new_id
from loyalty.ledger.service import check_limit
from loyalty.text import check_characters, clean_text
from loyalty.webhooks import repository
from loyalty.webhooks.schemas import (
    CreateWebhookEndpoint,
    DeliveryAttempt,
    DeliveryAttemptPage,
    Recover,
    Recovered,
    Secret,
    UpdateWebhookEndpoint,
    WebhookEndpoint,
    WebhookEndpointPage,
    WebhookEndpointWithSecret,
)
from loyalty.webhooks.signing import new_secret
from loyalty.webhooks.urls import Network, WebhookURLError, check_url

# The old secret keeps signing beside the new one this long after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)
RECOVER_WINDOW_MAX = timedelta(days=90)
# An endpoint's configuration, as the audit trail tells a change of it (never the secret).
AUDITED_FIELDS = ("url", "event_types", "description", "active", "disabled_reason")
# Longer path segments may be tokens (some receivers put theirs in the path).
AUDITED_SEGMENT_CHARS_MAX = 16


class WebhookEndpointNotFoundError(NotFoundError):
    code = "webhook_endpoint_not_found"


class DeliveryAttemptNotFoundError(NotFoundError):
    code = "delivery_attempt_not_found"


class WebhookEndpointDisabledError(ConflictError):
    code = "webhook_endpoint_disabled"


async def _active_endpoint(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """The endpoint, which must be active to be sent anything (409 otherwise)."""
    endpoint = await get_endpoint(connection, merchant_id, endpoint_id)
    if not endpoint.active:
        raise WebhookEndpointDisabledError(
            "This endpoint is disabled: re-enable it (PATCH active: true) before sending to it.",
            {"webhook_id": str(endpoint_id), "disabled_reason": endpoint.disabled_reason},
        )
    return endpoint


def endpoint_view(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        event_types=None if row.event_types is None else msgspec.json.decode(row.event_types),
        description=row.description,
        active=row.active,
        disabled_reason=row.disabled_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def audited_url(url: str) -> str:
    """The URL without what may be a credential: no user info, no query, no fragment,
    and a long path segment (``/services/T0/B0/<token>``) cut to its first characters."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "[not shown]"
    host = parts.netloc.rpartition("@")[2]
    path = "/".join(
        segment if len(segment) <= AUDITED_SEGMENT_CHARS_MAX else segment[:4] + "…"
        for segment in parts.path.split("/")
    )
    return urllib.parse.urlunsplit((parts.scheme, host, path, "…" if parts.query else "", ""))


def _audited(view: WebhookEndpoint, fields: dict[str, object]) -> dict[str, object]:
    return {
        field: audited_url(view.url) if field == "url" else value for field, value in fields.items()
    }


async def record_change(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint: WebhookEndpoint,
    action: str,
    values: dict[str, object],
    now: datetime,
) -> None:
    """The audit trail's row for a change of ``endpoint`` (the merchant's or the
    delivery worker's, whoever is acting)."""
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        action=action,
        summary=audit.describe(_audited(endpoint, values)),
        now=now,
    )


def attempt_view(row: Any) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        attempt=row.attempt,
        status=row.status,
        trigger=row.trigger,
        response_status=row.response_status,
        response_duration_ms=row.response_duration_ms,
        response_body=row.response_body,
        error=row.error,
        scheduled_at=row.scheduled_at,
        attempted_at=row.attempted_at,
    )


async def _checked_url(url: str, allowed: Sequence[Network]) -> str:
    try:
        await check_url(url, allowed)
    except WebhookURLError as error:
        raise ValidationFailedError.for_field("url", str(error)) from error
    return url


def _event_types(types: list[str] | None) -> str | None:
    if types is None:
        return None
    unknown = sorted(set(types) - KNOWN)
    if unknown:
        raise ValidationFailedError.for_field(
            "event_types", f"unknown event type(s): {', '.join(unknown)}"
        )
    if not types:
        raise ValidationFailedError.for_field(
            "event_types", "must name at least one type (null: every type)"
        )
    return msgspec.json.encode(sorted(set(types))).decode()


def _description(value: str | None) -> str | None:
    check_characters(value, "description")
    return clean_text(value)


def endpoint_id_of(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as error:
        raise _endpoint_not_found(text) from error


def _endpoint_not_found(endpoint_id: object) -> WebhookEndpointNotFoundError:
    return WebhookEndpointNotFoundError(
        "No webhook endpoint with this id.", {"webhook_id": str(endpoint_id)}
    )


async def check_new_endpoint(
    data: CreateWebhookEndpoint, allowed: Sequence[Network]
) -> tuple[str, str | None, str | None]:
    """Validate a new endpoint before any transaction (resolving its host takes time)."""
    types = _event_types(data.event_types)
    description = _description(data.description)
    return await _checked_url(data.url, allowed), types, description


async def create_endpoint(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    data: CreateWebhookEndpoint,
    checked: tuple[str, str | None, str | None],
) -> WebhookEndpointWithSecret:
    url, types, description = checked
    now = utc_now()
    secret = new_secret()
    endpoint_id = new_id()
    await repository.insert_endpoint(
        connection,
        {
            "merchant_id": merchant_id,
            "id": endpoint_id,
            "url": url,
            "description": description,
            "event_types": types,
            "active": data.active,
            "disabled_reason": None,
            "secret": secret,
            "created_at": now,
            "updated_at": now,
        },
    )
    view = endpoint_view(await repository.get_endpoint(connection, merchant_id, endpoint_id))
    await record_change(
        connection,
        merchant_id,
        view,
        "created",
        audit.present(view, ("url", "event_types", "description", "active")),
        now,
    )
    return WebhookEndpointWithSecret(**msgspec.structs.asdict(view), secret=secret)


async def get_endpoint(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    row = await repository.get_endpoint(connection, merchant_id, endpoint_id)
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    return endpoint_view(row)


async def list_endpoints(
    connection: AsyncConnection, merchant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> WebhookEndpointPage:
    check_limit(limit)
    after = uuid.UUID(cursor_value(cursor, "w", uuid.UUID)) if cursor else None
    rows = await repository.list_endpoints(connection, merchant_id, after=after, limit=limit + 1)
    page = [endpoint_view(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id, kind="w") if len(rows) > limit else None
    return WebhookEndpointPage(data=page, next_cursor=next_cursor)


async def check_endpoint_update(
    data: UpdateWebhookEndpoint, allowed: Sequence[Network]
) -> dict[str, Any]:
    """The columns a PATCH changes, validated before any transaction."""
    values: dict[str, Any] = {}
    if not isinstance(data.url, msgspec.UnsetType):
        values["url"] = await _checked_url(data.url, allowed)
    if not isinstance(data.event_types, msgspec.UnsetType):
        values["event_types"] = _event_types(data.event_types)
    if not isinstance(data.description, msgspec.UnsetType):
        values["description"] = _description(data.description)
    if not isinstance(data.active, msgspec.UnsetType):
        values["active"] = data.active
        if data.active:
            # Re-enabled: a fresh start (failures before it do not count).
            values["disabled_reason"] = None
            values["failing_since"] = None
    return values


async def update_endpoint(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    values: dict[str, Any],
) -> WebhookEndpoint:
    row = await repository.get_endpoint(connection, merchant_id, endpoint_id, lock=True)
    if row is None:
        raise _endpoint_not_found(endpoint_id)
    if not values:
        return endpoint_view(row)
    now = utc_now()
    if values.get("active") is False and row.active:
        values = {**values, "disabled_reason": "disabled by the merchant"}
        await repository.fail_pending(
            connection, merchant_id, endpoint_id, "endpoint disabled", now
        )
    await repository.update_endpoint(
        connection, merchant_id, endpoint_id, {**values, "updated_at": now}
    )
    endpoint = await get_endpoint(connection, merchant_id, endpoint_id)
    changes = audit.changed(endpoint_view(row), endpoint, AUDITED_FIELDS)
    if changes:
        action = "updated"
        if "active" in changes:
            action = "enabled" if endpoint.active else "disabled"
        await record_change(connection, merchant_id, endpoint, action, changes, now)
    return endpoint


async def delete_endpoint(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> None:
    row = await repository.get_endpoint(connection, merchant_id, endpoint_id, lock=True)
    if row is None or not await repository.delete_endpoint(connection, merchant_id, endpoint_id):
        raise _endpoint_not_found(endpoint_id)
    endpoint = endpoint_view(row)
    await record_change(
        connection, merchant_id, endpoint, "deleted", {"url": endpoint.url}, utc_now()
    )


async def rotate_secret(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> Secret:
    now = utc_now()
    secret = new_secret()
    if not await repository.rotate_secret(
        connection, merchant_id, endpoint_id, secret, now + ROTATION_OVERLAP, now
    ):
        raise _endpoint_not_found(endpoint_id)
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        action="secret_rotated",
        summary=(
            "a new signing secret; the previous one also signs until "
            f"{(now + ROTATION_OVERLAP).isoformat()}"
        ),
        now=now,
    )
    return Secret(secret=secret)


async def send_test(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> uuid.UUID:
    """A ``webhook.test`` event, delivered to this endpoint only."""
    endpoint = await _active_endpoint(connection, merchant_id, endpoint_id)
    now = utc_now()
    return await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=WEBHOOK_TEST,
        subject_id=endpoint_id,
        payload={"webhook": {"id": str(endpoint.id), "url": endpoint.url}, "sent_at": now},
        now=now,
    )


async def list_attempts(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    event_id: str | None,
    limit: int,
    cursor: str | None,
) -> DeliveryAttemptPage:
    check_limit(limit)
    await get_endpoint(connection, merchant_id, endpoint_id)
    before = uuid.UUID(cursor_value(cursor, "d", uuid.UUID)) if cursor else None
    event_uuid = None
    if event_id is not None:
        try:
            event_uuid = uuid.UUID(event_id)
        except ValueError as error:
            raise ValidationFailedError.for_field(
                "event_id", "is not an event id", location="query"
            ) from error
    rows = await repository.list_attempts(
        connection,
        merchant_id,
        endpoint_id,
        status=status,
        event_id=event_uuid,
        before=before,
        limit=limit + 1,
    )
    page = [attempt_view(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id, kind="d") if len(rows) > limit else None
    return DeliveryAttemptPage(data=page, next_cursor=next_cursor)


async def _schedule_manual(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    events_: Sequence[tuple[uuid.UUID, str]],
    now: datetime,
) -> None:
    numbers = await repository.next_attempt_numbers(
        connection, merchant_id, endpoint_id, [event_id for event_id, _ in events_]
    )
    await repository.insert_attempts(
        connection,
        [
            {
                "merchant_id": merchant_id,
                "id": new_id(),
                "endpoint_id": endpoint_id,
                "event_id": event_id,
                "event_type": event_type,
                "attempt": numbers[event_id],
                "trigger": "manual",
                "status": "pending",
                "scheduled_at": now,
            }
            for event_id, event_type in events_
        ],
    )


async def resend(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    attempt_id: str,
) -> DeliveryAttempt:
    """Send an attempt's event again now (same ``webhook-id``): a new manual attempt."""
    await _active_endpoint(connection, merchant_id, endpoint_id)
    try:
        attempt_uuid = uuid.UUID(attempt_id)
    except ValueError:
        attempt_uuid = None
    row = (
        None
        if attempt_uuid is None
        else await repository.get_attempt(connection, merchant_id, endpoint_id, attempt_uuid)
    )
    if row is None:
        raise DeliveryAttemptNotFoundError(
            "No delivery attempt with this id at this endpoint.", {"delivery_id": attempt_id}
        )
    now = utc_now()
    await _schedule_manual(
        connection, merchant_id, endpoint_id, [(row.event_id, row.event_type)], now
    )
    rows = await repository.list_attempts(
        connection,
        merchant_id,
        endpoint_id,
        status="pending",
        event_id=row.event_id,
        before=None,
        limit=1,
    )
    return attempt_view(rows[0])


async def recover(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    data: Recover,
) -> Recovered:
    """Send again every event of [since, until) whose delivery to the endpoint failed."""
    await _active_endpoint(connection, merchant_id, endpoint_id)
    now = utc_now()
    until = data.until or now
    for name, value in (("since", data.since), ("until", until)):
        if value.tzinfo is None:
            raise ValidationFailedError.for_field(name, "must have a time zone (e.g. Z)")
    if until <= data.since:
        raise ValidationFailedError.for_field("until", "must be after since")
    if until - data.since > RECOVER_WINDOW_MAX:
        raise ValidationFailedError.for_field("since", "the range must be 90 days at most")
    failed = await repository.failed_events(connection, merchant_id, endpoint_id, data.since, until)
    await _schedule_manual(
        connection, merchant_id, endpoint_id, [(row.id, row.type) for row in failed], now
    )
    return Recovered(events=len(failed))
