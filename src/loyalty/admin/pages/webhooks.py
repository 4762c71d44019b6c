"""Webhooks (admin only): the endpoints, their delivery logs, and what the API does to
them (add, edit, disable and enable, rotate the secret, send a test event, resend one
event, recover every failed one), through the same services as ``/api/v1/webhooks``.

A signing secret is shown once, on the page that answers the form that made it (add,
rotate): never in an address, never again.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Response, get, post
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.web import (
    AdminRequest,
    Form,
    current_user,
    database,
    form_from_error,
    form_values,
    redirect,
    render,
    when,
)
from loyalty.db.types import utc_now
from loyalty.decoding import validation_error
from loyalty.errors import LoyaltyError, ValidationFailedError
from loyalty.events.types import EVENT_TYPES
from loyalty.webhooks import repository as webhooks_repository
from loyalty.webhooks import service
from loyalty.webhooks.schemas import (
    CreateWebhookEndpoint,
    DeliveryAttempt,
    DeliveryAttemptPage,
    Recover,
    UpdateWebhookEndpoint,
    WebhookEndpoint,
)
from loyalty.webhooks.urls import Network

ENDPOINT_FIELDS = ("url", "description", "event_types")
RECOVER_FIELDS = ("since", "until")
ENDPOINTS_PER_PAGE = 50
ATTEMPTS_PER_PAGE = 25
STATUS_FILTERS = (
    ("", "All"),
    ("failed", "Failed"),
    ("succeeded", "Succeeded"),
    ("pending", "Pending"),
)
# The recover form's default start: the last day.
RECOVER_DEFAULT_SPAN = timedelta(days=1)
_LENGTH = re.compile(r"Expected `(?:str|array)` of length <= (\d+)")
_NOT_EMPTY = re.compile(r"Expected `str` of length >= 1")


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """An endpoint as the pages show it: its state and its latest delivery."""

    endpoint: WebhookEndpoint
    failing_since: datetime | None
    last_attempt: DeliveryAttempt | None


def _allowed(request: AdminRequest) -> Sequence[Network]:
    networks: Sequence[Network] = request.app.state.settings.webhook_allowed_networks
    return networks


def _path(endpoint_id: uuid.UUID) -> str:
    return f"/admin/webhooks/{endpoint_id}"


async def _endpoint_row(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint: WebhookEndpoint
) -> EndpointRow:
    # When deliveries started failing is the endpoint's own state (the API does not
    # show it): read where the delivery worker keeps it.
    stored = await webhooks_repository.get_endpoint(connection, merchant_id, endpoint.id)
    latest = await service.list_attempts(
        connection, merchant_id, endpoint.id, status=None, event_id=None, limit=1, cursor=None
    )
    return EndpointRow(
        endpoint=endpoint,
        failing_since=None if stored is None else stored.failing_since,
        last_attempt=latest.data[0] if latest.data else None,
    )


# --- the endpoint form ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointForm:
    """What the add and edit forms send: ``event_types`` None means every type."""

    url: str
    description: str | None
    event_types: list[str] | None
    chosen: frozenset[str]


async def _endpoint_form(request: AdminRequest) -> tuple[dict[str, str], EndpointForm]:
    values = await form_values(request)
    submitted = await request.form()
    chosen = [value for value in submitted.getall("event_types", []) if isinstance(value, str)]
    every = values.get("events", "all") != "some"
    values["events"] = "all" if every else "some"
    description = values.get("description", "").strip()
    return values, EndpointForm(
        url=values.get("url", "").strip(),
        description=description or None,
        event_types=None if every else chosen,
        chosen=frozenset(chosen),
    )


def _friendly(error: msgspec.ValidationError) -> ValidationFailedError:
    """A msgspec length error in words (the API's limits, the form's vocabulary)."""
    failed = validation_error(error)
    for detail in failed.details if isinstance(failed.details, list) else []:
        message = str(detail.get("message", ""))
        if (match := _LENGTH.search(message)) is not None:
            detail["message"] = f"must be at most {int(match.group(1)):,} characters"
        elif _NOT_EMPTY.search(message):
            detail["message"] = "must not be empty"
        if str(detail.get("field", "")).startswith("event_types"):
            detail["field"] = "event_types"
    return failed


def _problems(error: ValidationFailedError) -> list[dict[str, Any]]:
    details = error.details if isinstance(error.details, list) else []
    return [detail for detail in details if isinstance(detail, dict)]


async def _checked(
    submitted: EndpointForm,
    model: type[Any],
    check: Callable[[Any, Sequence[Network]], Awaitable[Any]],
    allowed: Sequence[Network],
) -> tuple[Any, Any]:
    """The API's body (``model``) of the form and the service's check of it
    (``check``): every problem found at once, each about its field, or none."""
    problems: list[dict[str, Any]] = []
    if not submitted.url:
        problems.append({"field": "url", "message": "enter the address events are sent to"})
    event_types = submitted.event_types
    if event_types is not None and not event_types:
        problems.append(
            {
                "field": "event_types",
                "message": "choose at least one event type, or choose every event type",
            }
        )
        event_types = None  # the other fields are still checked
    fields = {
        "url": submitted.url,
        "event_types": event_types,
        "description": submitted.description,
    }
    try:
        try:
            data = msgspec.convert(fields, model, strict=True)
        except msgspec.ValidationError as error:
            raise _friendly(error) from error
        checked = await check(data, allowed)
    except ValidationFailedError as error:
        problems.extend(_problems(error))
    if problems:
        raise ValidationFailedError("The endpoint was not saved.", problems)
    return data, checked


def _endpoint_form_error(error: LoyaltyError, values: Mapping[str, str]) -> Form:
    if error.status_code == 404:
        raise error
    return form_from_error(error, values, fields=ENDPOINT_FIELDS)


# --- the list and the add form -----------------------------------------------------------


async def _list_page(
    request: AdminRequest,
    form: Form,
    chosen: frozenset[str] = frozenset(),
    status_code: int = 200,
) -> Response[str]:
    staff = current_user(request)
    cursor = request.query_params.get("cursor") or None
    async with database(request).read() as connection:
        page = await service.list_endpoints(
            connection, staff.merchant_id, limit=ENDPOINTS_PER_PAGE, cursor=cursor
        )
        rows = [await _endpoint_row(connection, staff.merchant_id, one) for one in page.data]
    return render(
        request,
        "webhooks/list.html",
        status_code=status_code,
        rows=rows,
        next_cursor=page.next_cursor,
        paged=cursor is not None,
        form=form,
        chosen=chosen,
        event_types=EVENT_TYPES,
    )


@get("/webhooks")
async def webhooks_page(request: AdminRequest) -> Response[str]:
    return await _list_page(request, Form(values={"events": "all"}))


@post("/webhooks")
async def add_webhook(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values, submitted = await _endpoint_form(request)
    try:
        data, checked = await _checked(
            submitted, CreateWebhookEndpoint, service.check_new_endpoint, _allowed(request)
        )

        async def work(connection: AsyncConnection) -> Any:
            return await service.create_endpoint(connection, staff.merchant_id, data, checked)

        created = await database(request).transaction(work)
    except LoyaltyError as error:
        form = _endpoint_form_error(error, values)
        return await _list_page(request, form, submitted.chosen, 422)
    return render(
        request,
        "webhooks/secret.html",
        endpoint=created,
        secret=created.secret,
        heading="Endpoint added",
        intro="Events are now sent to this endpoint, signed with this secret.",
    )


# --- one endpoint: its delivery log and actions -------------------------------------------


def _attempts_status(request: AdminRequest) -> str | None:
    status = request.query_params.get("status") or None
    return status if status in {"failed", "succeeded", "pending"} else None


def _recover_defaults() -> dict[str, str]:
    since = (utc_now() - RECOVER_DEFAULT_SPAN).astimezone(UTC)
    return {"since": since.strftime("%Y-%m-%dT%H:%M"), "until": ""}


async def _log_page(
    request: AdminRequest,
    endpoint_id: uuid.UUID,
    *,
    recover_form: Form | None = None,
    alert: str | None = None,
    status_code: int = 200,
) -> Response[str]:
    staff = current_user(request)
    cursor = request.query_params.get("cursor") or None
    status = _attempts_status(request)
    async with database(request).read() as connection:
        endpoint = await service.get_endpoint(connection, staff.merchant_id, endpoint_id)
        row = await _endpoint_row(connection, staff.merchant_id, endpoint)
        attempts: DeliveryAttemptPage = await service.list_attempts(
            connection,
            staff.merchant_id,
            endpoint_id,
            status=status,
            event_id=None,
            limit=ATTEMPTS_PER_PAGE,
            cursor=cursor,
        )
    return render(
        request,
        "webhooks/detail.html",
        status_code=status_code,
        row=row,
        endpoint=endpoint,
        attempts=attempts.data,
        next_cursor=attempts.next_cursor,
        paged=cursor is not None,
        status_filter=status or "",
        status_filters=STATUS_FILTERS,
        recover_form=recover_form or Form(values=_recover_defaults()),
        alert=alert,
    )


@get("/webhooks/{endpoint_id:uuid}")
async def webhook_page(request: AdminRequest, endpoint_id: FromPath[uuid.UUID]) -> Response[str]:
    return await _log_page(request, endpoint_id)


async def _edit_page(
    request: AdminRequest,
    endpoint: WebhookEndpoint,
    form: Form,
    chosen: frozenset[str],
    status_code: int = 200,
) -> Response[str]:
    return render(
        request,
        "webhooks/edit.html",
        status_code=status_code,
        endpoint=endpoint,
        form=form,
        chosen=chosen,
        event_types=EVENT_TYPES,
    )


async def _endpoint(request: AdminRequest, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The signed-in merchant's endpoint (another merchant's: the 404 page)."""
    async with database(request).read() as connection:
        return await service.get_endpoint(
            connection, current_user(request).merchant_id, endpoint_id
        )


@get("/webhooks/{endpoint_id:uuid}/edit")
async def edit_webhook_page(
    request: AdminRequest, endpoint_id: FromPath[uuid.UUID]
) -> Response[str]:
    endpoint = await _endpoint(request, endpoint_id)
    values = {
        "url": endpoint.url,
        "description": endpoint.description or "",
        "events": "all" if endpoint.event_types is None else "some",
    }
    chosen = frozenset(endpoint.event_types or ())
    return await _edit_page(request, endpoint, Form(values=values), chosen)


@post("/webhooks/{endpoint_id:uuid}/edit")
async def edit_webhook(request: AdminRequest, endpoint_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)
    endpoint = await _endpoint(request, endpoint_id)
    values, submitted = await _endpoint_form(request)
    try:
        _data, changes = await _checked(
            submitted, UpdateWebhookEndpoint, service.check_endpoint_update, _allowed(request)
        )
        await _update(request, staff.merchant_id, endpoint_id, changes)
    except LoyaltyError as error:
        form = _endpoint_form_error(error, values)
        return await _edit_page(request, endpoint, form, submitted.chosen, 422)
    return redirect(request, _path(endpoint_id), notice="Endpoint saved.")


async def _update(
    request: AdminRequest, merchant_id: uuid.UUID, endpoint_id: uuid.UUID, changes: dict[str, Any]
) -> WebhookEndpoint:
    async def work(connection: AsyncConnection) -> WebhookEndpoint:
        return await service.update_endpoint(connection, merchant_id, endpoint_id, changes)

    updated: WebhookEndpoint = await database(request).transaction(work)
    return updated


@post("/webhooks/{endpoint_id:uuid}/disable")
async def disable_webhook(request: AdminRequest, endpoint_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)
    changes = await service.check_endpoint_update(
        UpdateWebhookEndpoint(active=False), _allowed(request)
    )
    await _update(request, staff.merchant_id, endpoint_id, changes)
    return redirect(
        request,
        _path(endpoint_id),
        notice="Endpoint disabled: nothing is sent to it until it is enabled again.",
    )


@post("/webhooks/{endpoint_id:uuid}/enable")
async def enable_webhook(request: AdminRequest, endpoint_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)
    changes = await service.check_endpoint_update(
        UpdateWebhookEndpoint(active=True), _allowed(request)
    )
    await _update(request, staff.merchant_id, endpoint_id, changes)
    return redirect(
        request,
        _path(endpoint_id),
        notice="Endpoint enabled. Events it missed meanwhile can be sent with Recover.",
    )


@post("/webhooks/{endpoint_id:uuid}/rotate-secret")
async def rotate_webhook_secret(
    request: AdminRequest, endpoint_id: FromPath[uuid.UUID]
) -> Response[str]:
    staff = current_user(request)

    async def work(connection: AsyncConnection) -> tuple[WebhookEndpoint, str]:
        secret = await service.rotate_secret(connection, staff.merchant_id, endpoint_id)
        endpoint = await service.get_endpoint(connection, staff.merchant_id, endpoint_id)
        return endpoint, secret.secret

    endpoint, secret = await database(request).transaction(work)
    hours = int(service.ROTATION_OVERLAP.total_seconds() // 3600)
    return render(
        request,
        "webhooks/secret.html",
        endpoint=endpoint,
        secret=secret,
        heading="New signing secret",
        intro=(
            f"Events are signed with this secret from now on. The previous secret also "
            f"signs them for {hours} hours, so the receiver can switch over meanwhile."
        ),
    )


async def _conflict_or_redirect(
    request: AdminRequest, endpoint_id: uuid.UUID, error: LoyaltyError
) -> Response[Any]:
    """A refused action (the endpoint is disabled…): the log page saying why."""
    if error.status_code == 404:
        raise error
    return await _log_page(request, endpoint_id, alert=error.message, status_code=409)


@post("/webhooks/{endpoint_id:uuid}/test")
async def send_test_event(request: AdminRequest, endpoint_id: FromPath[uuid.UUID]) -> Response[Any]:
    staff = current_user(request)

    async def work(connection: AsyncConnection) -> uuid.UUID:
        return await service.send_test(connection, staff.merchant_id, endpoint_id)

    try:
        event_id = await database(request).transaction(work)
    except service.WebhookEndpointDisabledError as error:
        return await _conflict_or_redirect(request, endpoint_id, error)
    return redirect(
        request,
        _path(endpoint_id),
        notice=f"Test event {event_id} sent; its delivery appears below within seconds.",
    )


@post("/webhooks/{endpoint_id:uuid}/deliveries/{attempt_id:uuid}/resend")
async def resend_delivery(
    request: AdminRequest, endpoint_id: FromPath[uuid.UUID], attempt_id: FromPath[uuid.UUID]
) -> Response[Any]:
    staff = current_user(request)

    async def work(connection: AsyncConnection) -> DeliveryAttempt:
        return await service.resend(connection, staff.merchant_id, endpoint_id, str(attempt_id))

    try:
        attempt = await database(request).transaction(work)
    except service.WebhookEndpointDisabledError as error:
        return await _conflict_or_redirect(request, endpoint_id, error)
    return redirect(
        request,
        _path(endpoint_id),
        notice=(
            f"Event {attempt.event_id} ({attempt.event_type}) is being sent again "
            f"(attempt {attempt.attempt})."
        ),
    )


def _moment(values: Mapping[str, str], name: str) -> datetime | None:
    """A ``datetime-local`` value (read as UTC) or an RFC 3339 timestamp; None if empty."""
    text = values.get(name, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise ValidationFailedError.for_field(name, "must be a date and time") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _recover_request(values: Mapping[str, str]) -> Recover:
    since = _moment(values, "since")
    until = _moment(values, "until")
    if since is None:
        raise ValidationFailedError.for_field("since", "enter the time to recover from")
    if until is None and since >= utc_now():
        raise ValidationFailedError.for_field("since", "must be in the past")
    return Recover(since=since, until=until)


@post("/webhooks/{endpoint_id:uuid}/recover")
async def recover_deliveries(
    request: AdminRequest, endpoint_id: FromPath[uuid.UUID]
) -> Response[Any]:
    staff = current_user(request)
    values = await form_values(request)
    try:
        data = _recover_request(values)

        async def work(connection: AsyncConnection) -> int:
            recovered = await service.recover(connection, staff.merchant_id, endpoint_id, data)
            return recovered.events

        count = await database(request).transaction(work)
    except ValidationFailedError as error:
        form = form_from_error(error, values, fields=RECOVER_FIELDS)
        return await _log_page(request, endpoint_id, recover_form=form, status_code=422)
    except service.WebhookEndpointDisabledError as error:
        return await _conflict_or_redirect(request, endpoint_id, error)
    since_text = when(data.since)
    if count == 0:
        notice = f"No event failed since {since_text}: nothing to send again."
    else:
        notice = f"{count} failed event(s) since {since_text} are being sent again."
    return redirect(request, _path(endpoint_id), notice=notice)


ROUTES = [
    webhooks_page,
    add_webhook,
    webhook_page,
    edit_webhook_page,
    edit_webhook,
    disable_webhook,
    enable_webhook,
    rotate_webhook_secret,
    send_test_event,
    resend_delivery,
    recover_deliveries,
]
