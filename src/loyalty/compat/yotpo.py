"""Yotpo Loyalty & Referrals: ``POST /api/v2/points/adjust`` (seed 001).

Only translation: Yotpo's body becomes the native adjustment (the same
ledger service, idempotency, limits and events), and the answer is the
customer's state in Yotpo's words. Auth is ``x-guid`` (the merchant id) plus
``x-api-key`` (a key issued here, of that merchant), or ``?guid=&api_key=``.
Errors keep the native shape; an unknown customer is a 422, as Yotpo answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityScheme
from litestar.params import JSONBody

from loyalty.compat import native
from loyalty.compat.fields import renamed_fields
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef
from loyalty.errors import UnauthorizedError, ValidationFailedError
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.errors import outcome_error
from loyalty.http.openapi import error_responses
from loyalty.http.surface import Credentials, Surface, header
from loyalty.http.writes import REPLAYED_HEADER, request_idempotency
from loyalty.ledger import service as ledger_service
from loyalty.ledger.schemas import CreateTransaction

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Our field names in errors, as Yotpo's clients know them.
FIELDS = {
    "points": "point_adjustment_amount",
    "description": "history_title",
    "apply_to_lifetime": "apply_adjustment_to_points_earned",
    "customer_id": "customer_id",
    "customer_email": "customer_email",
}
SECURITY_SCHEMES = {
    "YotpoGuid": SecurityScheme(
        type="apiKey",
        name="x-guid",
        security_scheme_in="header",
        description="Yotpo surface: the merchant id.",
    ),
    "YotpoApiKey": SecurityScheme(
        type="apiKey",
        name="x-api-key",
        security_scheme_in="header",
        description="Yotpo surface: an API key issued here, of that merchant.",
    ),
}
YOTPO_SECURITY: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]


class PointsAdjustment(msgspec.Struct):
    """Seed 001's body. Fields Yotpo would ignore are ignored."""

    point_adjustment_amount: Annotated[
        int,
        msgspec.Meta(
            ge=INT32_MIN,
            le=INT32_MAX,
            description="Points to add (positive) or remove (negative); never zero.",
        ),
    ]
    customer_email: str | None = None
    customer_id: str | None = None
    history_title: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    apply_adjustment_to_points_earned: bool = False
    visible_to_customer: bool = True


class YotpoCustomer(msgspec.Struct, frozen=True):
    customer_email: str | None
    customer_id: str
    first_name: str | None
    last_name: str | None
    points_balance: float
    points_earned: float
    points_redeemed: float
    points_expired: float
    pending_points: float
    vip_tier_name: str | None


class YotpoController(Controller):
    path = "/api/v2/points"
    security = YOTPO_SECURITY
    tags = ["Yotpo compatible"]

    @post(
        "/adjust",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Adjust a customer's points (Yotpo)",
        description=(
            "Yotpo's adjust endpoint: `customer_email` (or `customer_id`), "
            "`point_adjustment_amount` (int32, non-zero), `apply_adjustment_to_points_earned` "
            "(default false), `history_title`, `visible_to_customer`. Answers the customer's "
            "points. Limited per key like every surface (100/minute by default)."
        ),
        responses={
            200: ResponseSpec(data_container=YotpoCustomer, description="The customer's points."),
            **error_responses(409, 422),
        },
    )
    async def adjust(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[PointsAdjustment],
    ) -> Response[Any]:
        with renamed_fields(FIELDS):
            data = await strict_body(request, PointsAdjustment)
            ref = _customer(data)
            key, fingerprint = await request_idempotency(request)
            native = CreateTransaction(
                points=data.point_adjustment_amount,
                description=data.history_title or "",
                apply_to_lifetime=data.apply_adjustment_to_points_earned,
                visible_to_customer=data.visible_to_customer,
            )
            outcome = await ledger_service.adjust_points(
                caller.ledger_writer,
                caller.merchant_id,
                ref,
                native,
                idempotency_key=key,
                request_fingerprint=fingerprint,
            )
        if outcome.status_code >= 400:
            return outcome_error(SURFACE, outcome, request.url.path)
        headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
        customer = await customers_service.get_customer(caller.database, caller.merchant_id, ref)
        assert customer.customer_id is not None  # found by platform id or email: not erased
        state = YotpoCustomer(
            customer_email=customer.email,
            customer_id=customer.customer_id,
            first_name=customer.first_name,
            last_name=customer.last_name,
            points_balance=customer.points_balance,
            points_earned=customer.lifetime_points,
            points_redeemed=customer.points_spent,
            points_expired=customer.points_expired,
            pending_points=customer.pending_points,
            vip_tier_name=None if customer.tier is None else customer.tier.name,
        )
        return Response(content=state, status_code=200, headers=headers)


def _customer(data: PointsAdjustment) -> CustomerRef:
    """Yotpo names the customer by email, or by id when given."""
    if data.customer_id is not None and data.customer_id.strip():
        return CustomerRef(customer_id=data.customer_id)
    if data.customer_email is not None and data.customer_email.strip():
        return CustomerRef(customer_email=data.customer_email)
    raise ValidationFailedError.for_field(
        "customer_email", "is required unless customer_id is given"
    )


def credentials(headers: Mapping[str, str], query: Mapping[str, Any]) -> Credentials:
    """``x-api-key`` and ``x-guid`` (the merchant), as headers or ``?api_key=&guid=``."""
    token = header(headers, "x-api-key") or str(query.get("api_key") or "").strip()
    guid = header(headers, "x-guid") or str(query.get("guid") or "").strip()
    if not token or not guid:
        raise UnauthorizedError("Send your API key as 'x-api-key' and your account as 'x-guid'.")
    try:
        merchant_id = uuid.UUID(guid)
    except ValueError as error:
        raise UnauthorizedError("The 'x-guid' is not an account of this service.") from error
    return Credentials(token, merchant_id)


def status(status_code: int, code: str) -> int:
    """Yotpo answers an unknown customer as invalid input (422)."""
    return 422 if code == "customer_not_found" else status_code


SURFACE = Surface(
    name="yotpo",
    prefix="/api/v2/points",
    credentials=credentials,
    error_body=native.error_body,
    security_schemes=SECURITY_SCHEMES,
    controllers=(YotpoController,),
    status=status,
)
