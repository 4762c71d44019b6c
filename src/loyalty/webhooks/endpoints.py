from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.events.service import parse_types, read_feed
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write
from loyalty.webhooks import service
from loyalty.webhooks.schemas import (
    CreatedWebhookEndpointEnvelope,
    CreateWebhookEndpoint,
    DeliveryAttemptEnvelope,
    DeliveryAttemptPage,
    EventPage,
    Recover,
    RecoveredEnvelope,
    SecretEnvelope,
    TestSent,
    TestSentEnvelope,
    UpdateWebhookEndpoint,
    WebhookEndpointEnvelope,
    WebhookEndpointPage,
)


def _allowed(request: Request[Any, Any, Any]) -> Any:
    return request.app.state.settings.webhook_allowed_networks


class EventController(Controller):
    """The events feed: catch up on every change, in order, without webhooks."""

    path = "/api/v1/events"
    security = BEARER_SECURITY
    tags = ["Events"]

    @get(
        "/",
        opt={"scope": "webhooks:read"},
        summary="The events feed, oldest first",
        description=(
            "Every event of the programme exactly once, in `sequence` order, even while "
            "writers commit: follow `next_cursor` (always present) and poll with it later for "
            "what came after. `has_more` says whether more events are ready now. Without "
            "`cursor` the feed starts at the oldest event kept (LOYALTY_EVENT_RETENTION_DAYS)."
        ),
        responses=error_responses(422),
    )
    async def list_events(
        self,
        caller: CurrentCaller,
        cursor: str | None = Parameter(required=False, max_length=200),
        limit: int = Parameter(default=20, description="Page size, 1 to 100."),
        event_type: Annotated[
            list[str] | None,
            QueryParameter(
                name="type",
                required=False,
                description="Only these types (repeat it, or separate with commas).",
            ),
        ] = None,
        customer_id: str | None = Parameter(
            required=False, max_length=255, description="Only events about this customer."
        ),
    ) -> EventPage:
        return await read_feed(
            caller.database,
            caller.merchant_id,
            cursor=cursor,
            limit=limit,
            types=parse_types(event_type),
            customer_ref=customer_id,
        )


class WebhookController(Controller):
    """Endpoints that receive the programme's events, signed (Standard Webhooks)."""

    path = "/api/v1/webhooks"
    security = BEARER_SECURITY
    tags = ["Webhooks"]

    @post(
        "/",
        opt={"scope": "webhooks:write"},
        status_code=201,
        summary="Register an endpoint (its secret is shown once)",
        description=(
            "Events are POSTed to `url` with the headers `webhook-id`, `webhook-timestamp` and "
            "`webhook-signature` (Standard Webhooks): verify them with `secret`, which only this "
            "answer shows."
        ),
        responses=error_responses(422),
    )
    async def create_webhook(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[CreateWebhookEndpoint],
    ) -> Response[CreatedWebhookEndpointEnvelope]:
        data = await strict_body(request, CreateWebhookEndpoint)
        checked = await service.check_new_endpoint(data, _allowed(request))

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            endpoint = await service.create_endpoint(connection, caller.merchant_id, data, checked)
            return 201, CreatedWebhookEndpointEnvelope(data=endpoint)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/",
        opt={"scope": "webhooks:read"},
        summary="The endpoints (no secrets)",
        responses=error_responses(422),
    )
    async def list_webhooks(
        self,
        caller: CurrentCaller,
        limit: int = Parameter(default=20, description="Page size, 1 to 100."),
        cursor: str | None = Parameter(required=False, max_length=200),
    ) -> WebhookEndpointPage:
        async with caller.database.read() as connection:
            return await service.list_endpoints(
                connection, caller.merchant_id, limit=limit, cursor=cursor
            )

    @get(
        "/{webhook_id:str}",
        opt={"scope": "webhooks:read"},
        summary="One endpoint (no secret)",
        responses=error_responses(404),
    )
    async def get_webhook(
        self, caller: CurrentCaller, webhook_id: FromPath[str]
    ) -> WebhookEndpointEnvelope:
        endpoint_id = service.endpoint_id_of(webhook_id)
        async with caller.database.read() as connection:
            endpoint = await service.get_endpoint(connection, caller.merchant_id, endpoint_id)
        return WebhookEndpointEnvelope(data=endpoint)

    @patch(
        "/{webhook_id:str}",
        opt={"scope": "webhooks:write"},
        summary="Change an endpoint",
        description='Only the fields sent change; `{"active": true}` re-enables a disabled one.',
        responses=error_responses(404, 422),
    )
    async def update_webhook(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        webhook_id: FromPath[str],
        data: JSONBody[UpdateWebhookEndpoint],
    ) -> Response[WebhookEndpointEnvelope]:
        endpoint_id = service.endpoint_id_of(webhook_id)
        data = await strict_body(request, UpdateWebhookEndpoint)
        values = await service.check_endpoint_update(data, _allowed(request))

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            endpoint = await service.update_endpoint(
                connection, caller.merchant_id, endpoint_id, values
            )
            return 200, WebhookEndpointEnvelope(data=endpoint)

        return await idempotent_write(request, caller.principal, operation)

    @delete(
        "/{webhook_id:str}",
        opt={"scope": "webhooks:write"},
        status_code=204,
        summary="Delete an endpoint (nothing more is sent to it)",
        responses=error_responses(404),
    )
    async def delete_webhook(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, webhook_id: FromPath[str]
    ) -> Response[None]:
        endpoint_id = service.endpoint_id_of(webhook_id)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            await service.delete_endpoint(connection, caller.merchant_id, endpoint_id)
            return 204, None

        return await idempotent_write(request, caller.principal, operation)

    @post(
        "/{webhook_id:str}/rotate-secret",
        opt={"scope": "webhooks:write"},
        status_code=200,
        summary="A new secret (the old one keeps signing beside it for 24 hours)",
        responses=error_responses(404),
    )
    async def rotate_secret(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, webhook_id: FromPath[str]
    ) -> Response[SecretEnvelope]:
        endpoint_id = service.endpoint_id_of(webhook_id)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            secret = await service.rotate_secret(connection, caller.merchant_id, endpoint_id)
            return 200, SecretEnvelope(data=secret)

        return await idempotent_write(request, caller.principal, operation)

    @post(
        "/{webhook_id:str}/test",
        opt={"scope": "webhooks:write"},
        status_code=202,
        summary="Send a webhook.test event to this endpoint only",
        responses=error_responses(404, 409),
    )
    async def test_webhook(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, webhook_id: FromPath[str]
    ) -> Response[TestSentEnvelope]:
        endpoint_id = service.endpoint_id_of(webhook_id)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            event_id = await service.send_test(connection, caller.merchant_id, endpoint_id)
            return 202, TestSentEnvelope(data=TestSent(event_id=event_id))

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/{webhook_id:str}/deliveries",
        opt={"scope": "webhooks:read"},
        summary="The attempts log, newest first",
        responses=error_responses(404, 422),
    )
    async def list_deliveries(
        self,
        caller: CurrentCaller,
        webhook_id: FromPath[str],
        status: Literal["pending", "succeeded", "failed"] | None = Parameter(required=False),
        event_id: str | None = Parameter(required=False, max_length=64),
        limit: int = Parameter(default=20, description="Page size, 1 to 100."),
        cursor: str | None = Parameter(required=False, max_length=200),
    ) -> DeliveryAttemptPage:
        endpoint_id = service.endpoint_id_of(webhook_id)
        async with caller.database.read() as connection:
            return await service.list_attempts(
                connection,
                caller.merchant_id,
                endpoint_id,
                status=status,
                event_id=event_id,
                limit=limit,
                cursor=cursor,
            )

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/resend",
        opt={"scope": "webhooks:write"},
        status_code=202,
        summary="Send an attempt's event again now (same webhook-id)",
        responses=error_responses(404, 409),
    )
    async def resend(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        webhook_id: FromPath[str],
        delivery_id: FromPath[str],
    ) -> Response[DeliveryAttemptEnvelope]:
        endpoint_id = service.endpoint_id_of(webhook_id)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            attempt = await service.resend(connection, caller.merchant_id, endpoint_id, delivery_id)
            return 202, DeliveryAttemptEnvelope(data=attempt)

        return await idempotent_write(request, caller.principal, operation)

    @post(
        "/{webhook_id:str}/recover",
        opt={"scope": "webhooks:write"},
        status_code=202,
        summary="Send again every event of a time range whose delivery failed",
        description="`{since, until?}` (RFC 3339, at most 90 days apart; `until` defaults to now).",
        responses=error_responses(404, 409, 422),
    )
    async def recover(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        webhook_id: FromPath[str],
        data: JSONBody[Recover],
    ) -> Response[RecoveredEnvelope]:
        endpoint_id = service.endpoint_id_of(webhook_id)
        data = await strict_body(request, Recover)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            recovered = await service.recover(connection, caller.merchant_id, endpoint_id, data)
            return 202, RecoveredEnvelope(data=recovered)

        return await idempotent_write(request, caller.principal, operation)
