"""Bonifiq: ``POST /v1/pvt/Customer/{id}/points`` (seed 003).

Only translation: Bonifiq's body becomes the native adjustment (same ledger,
limits, events), answered in seed 003's envelope. ``{id}`` is the customer's
platform id or email. ``ChangeKey`` is Bonifiq's stricter idempotency: a key
already used answers an error (409 ``ChangeKeyAlreadyUsed``) and changes
nothing, even for the same request. Codes of the envelope (``Code`` /
``CodeName``): 00 Success, 01 InvalidRequest, 02 InsufficientPoints,
03 CustomerNotFound, 04 ChangeKeyAlreadyUsed, 05 Unauthorized, 06 Forbidden,
07 TooManyRequests, 08 BalanceLimitExceeded, 09 IdempotencyKeyReused,
10 RequestInProgress, 98 ServiceUnavailable, 99 Error.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityScheme
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.compat import repository
from loyalty.compat.fields import renamed_fields
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import Customer
from loyalty.errors import UnauthorizedError, ValidationFailedError
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.errors import as_response, error_reply, outcome_error
from loyalty.http.openapi import error_responses
from loyalty.http.surface import Credentials, Surface, header, unprocessable_as_400
from loyalty.http.writes import REPLAYED_HEADER, request_idempotency
from loyalty.idempotency import service as idempotency
from loyalty.ledger import service as ledger_service
from loyalty.ledger.schemas import CreateTransaction
from loyalty.points import format_points

FIELDS = {"points": "Points", "description": "CustomerReason", "internal_note": "Reason"}
HISTORY_ENTRIES = 20
SECURITY_SCHEMES = {
    "BasicAuth": SecurityScheme(
        type="http",
        scheme="basic",
        description="Bonifiq surface: an API key issued here as user or password.",
    ),
}
BONIFIQ_SECURITY: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]

# Bonifiq's codes for outcomes (the two-digit `Code`, its `CodeName`).
BONIFIQ_CODES: dict[str, tuple[str, str]] = {
    "success": ("00", "Success"),
    "validation_error": ("01", "InvalidRequest"),
    "invalid_json": ("01", "InvalidRequest"),
    "insufficient_points": ("02", "InsufficientPoints"),
    "customer_not_found": ("03", "CustomerNotFound"),
    "change_key_used": ("04", "ChangeKeyAlreadyUsed"),
    "unauthorized": ("05", "Unauthorized"),
    "insufficient_scope": ("06", "Forbidden"),
    "rate_limited": ("07", "TooManyRequests"),
    "balance_limit_exceeded": ("08", "BalanceLimitExceeded"),
    "idempotency_key_reused": ("09", "IdempotencyKeyReused"),
    "idempotency_request_in_progress": ("10", "RequestInProgress"),
    "service_unavailable": ("98", "ServiceUnavailable"),
}
BONIFIQ_OTHER = ("99", "Error")

_encoder = msgspec.json.Encoder()


class ChangePoints(msgspec.Struct, rename="pascal"):
    """Seed 003's body (PascalCase). Fields Bonifiq would ignore are ignored."""

    points: Annotated[int, msgspec.Meta(ge=-(10**9), le=10**9)]
    operation_type: Literal[0, 1]
    reason: Annotated[str, msgspec.Meta(max_length=500)]
    change_key: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    customer_reason: Annotated[str, msgspec.Meta(max_length=255)] | None = None


class PointsToExpire(msgspec.Struct, frozen=True, rename="pascal"):
    points: float
    when: datetime


class PointHistory(msgspec.Struct, frozen=True, rename="pascal"):
    id: uuid.UUID
    date_received: datetime
    expiration_date: datetime | None
    amount: float


class CustomerPoints(msgspec.Struct, frozen=True, rename="pascal"):
    customer_exists: bool
    internal_id: uuid.UUID
    points_balance: float
    points_to_expire: list[PointsToExpire]
    cashback_balance: float
    point_history: list[PointHistory]
    name: str | None


class Envelope(msgspec.Struct, frozen=True):
    """Seed 003's response envelope."""

    Result: CustomerPoints | None
    Code: str
    CodeName: str
    Severity: int
    HasWarning: bool
    HasError: bool
    ErrorMessage: str | None
    ErrorCode: int | None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """The envelope of a failure: ``Result`` is ``{"CustomerExists": false}`` for an
    unknown customer, else null."""

    Result: dict[str, Any] | None
    Code: str
    CodeName: str
    Severity: int
    HasWarning: bool
    HasError: bool
    ErrorMessage: str | None
    ErrorCode: int | None


class BonifiqController(Controller):
    path = "/v1/pvt/Customer"
    security = BONIFIQ_SECURITY
    tags = ["Bonifiq compatible"]

    @post(
        "/{customer:str}/points",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Add or remove a customer's points (Bonifiq)",
        description=(
            "Bonifiq's change-points endpoint. `{customer}` is the platform id or the email. "
            "`Points` positive with `OperationType` 0 adds, negative with 1 removes; `Reason` "
            "(internal) is required; `CustomerReason` is shown to the customer; a `ChangeKey` "
            "may be used once. Answers seed 003's envelope; failures are 400 (`HasError`), an "
            "unknown customer 404 (`Result.CustomerExists: false`), a used `ChangeKey` 409."
        ),
        responses={
            200: ResponseSpec(data_container=Envelope, description="Success (Code 00)."),
            **error_responses(404, 409, container=ErrorEnvelope),
        },
    )
    async def change_points(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer: FromPath[str],
        data: JSONBody[ChangePoints],
    ) -> Response[Any]:
        with renamed_fields(FIELDS):
            data = await strict_body(request, ChangePoints)
            _check_operation(data)
            ref = (
                CustomerRef(customer_email=customer)
                if "@" in customer
                else CustomerRef(customer_id=customer)
            )
            key, fingerprint = await request_idempotency(request)
            if data.change_key is not None:
                # Bonifiq's own key: stored like an Idempotency-Key, but never replayed.
                key = idempotency.check_key(f"bonifiq-change-key:{data.change_key}")
                fingerprint = fingerprint or idempotency.fingerprint(
                    request.method, request.url.path, request.url.query or "", await request.body()
                )
            native = CreateTransaction(
                points=data.points,
                description=data.customer_reason or "",
                internal_note=data.reason,
            )
            outcome = await ledger_service.adjust_points(
                caller.ledger_writer,
                caller.merchant_id,
                ref,
                native,
                idempotency_key=key,
                request_fingerprint=fingerprint,
            )
        if data.change_key is not None and (
            outcome.replayed or outcome.status_code == 409 or _code(outcome.body) in _REUSED
        ):
            return as_response(
                error_reply(
                    SURFACE,
                    409,
                    "change_key_used",
                    "This ChangeKey was already used.",
                    path=request.url.path,
                )
            )
        if outcome.status_code >= 400:
            return outcome_error(SURFACE, outcome, request.url.path)
        headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
        async with caller.database.read() as connection:
            state = await customers_service.get_customer(caller.database, caller.merchant_id, ref)
            result = await _result(connection, caller.merchant_id, state)
        return Response(
            content=bonifiq_envelope(msgspec.to_builtins(result)), status_code=200, headers=headers
        )


_REUSED = {"idempotency_key_reused", "idempotency_request_in_progress"}


def _code(body: bytes) -> str | None:
    decoded = msgspec.json.decode(body)
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        code: str = decoded["error"].get("code")
        return code
    return None


def _check_operation(data: ChangePoints) -> None:
    if data.points == 0:
        raise ValidationFailedError.for_field("Points", "must not be zero")
    if (data.operation_type == 0) != (data.points > 0):
        raise ValidationFailedError.for_field(
            "OperationType",
            "must be 0 (add) with positive Points and 1 (remove) with negative Points",
        )
    if not data.reason.strip():
        raise ValidationFailedError.for_field("Reason", "is required")


async def _result(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer: Customer
) -> CustomerPoints:
    lots = await repository.list_lots(connection, merchant_id, customer.id)
    entries = await repository.list_visible_entries(
        connection, merchant_id, customer.id, limit=HISTORY_ENTRIES
    )
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part) or None
    return CustomerPoints(
        customer_exists=True,
        internal_id=customer.id,
        points_balance=customer.points_balance,
        points_to_expire=[
            PointsToExpire(points=format_points(row.remaining_minor), when=row.expires_at)
            for row in lots
        ],
        cashback_balance=customer.store_credit_balance,
        point_history=[
            PointHistory(
                id=row.id,
                date_received=row.created_at,
                expiration_date=row.expires_at,
                amount=format_points(row.points_minor),
            )
            for row in entries
        ],
        name=name,
    )


def bonifiq_envelope(
    result: Any,
    *,
    code: str = "success",
    message: str | None = None,
    error_code: int | None = None,
) -> dict[str, Any]:
    """Seed 003's response envelope."""
    number, name = BONIFIQ_CODES.get(code, BONIFIQ_OTHER)
    failed = code != "success"
    return {
        "Result": result,
        "Code": number,
        "CodeName": name,
        "Severity": 2 if failed else 0,
        "HasWarning": False,
        "HasError": failed,
        "ErrorMessage": message if failed else None,
        "ErrorCode": error_code,
    }


def credentials(headers: Mapping[str, str], query: Mapping[str, Any]) -> Credentials:
    """HTTP Basic, the key as the user or the password (the other part may be anything)."""
    scheme, _, encoded = header(headers, "authorization").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise UnauthorizedError("Send your API key with HTTP Basic authentication.")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise UnauthorizedError("The Basic credentials are not valid base64.") from error
    username, _, password = decoded.partition(":")
    token = next((part for part in (username, password) if part.startswith("lk_")), "")
    if not token:
        raise UnauthorizedError("No API key in the Basic credentials.")
    return Credentials(token)


def error_body(status_code: int, code: str, message: str, details: Any, path: str) -> bytes:
    """The envelope, ``Result`` ``{"CustomerExists": false}`` for an unknown customer."""
    result = {"CustomerExists": False} if code == "customer_not_found" else None
    return _encoder.encode(
        bonifiq_envelope(result, code=code, message=message, error_code=status_code)
    )


SURFACE = Surface(
    name="bonifiq",
    prefix="/v1/pvt/",
    credentials=credentials,
    error_body=error_body,
    security_schemes=SECURITY_SCHEMES,
    controllers=(BonifiqController,),
    status=unprocessable_as_400,
    challenge='Basic realm="loyalty"',
)
