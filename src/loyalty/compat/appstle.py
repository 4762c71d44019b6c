"""Appstle Loyalty: ``/api/external/...`` with ``X-API-Key`` (seed 004).

Only translation over the native services: ``add-points`` / ``remove-points``
are adjustments, ``redeem-points`` a redemption of the reward whose integer
``number`` is the ``redeemRuleId``, ``customer-loyalty`` the customer, and
``point-redeem-rules`` the catalogue. Every answer about a customer is seed
004's loyalty profile, filled from the real data. Invalid input is a 400 in
problem-details shape (``title``, ``status``, ``detail``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityScheme
from litestar.params import JSONBody, Parameter
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.compat import repository
from loyalty.compat.fields import renamed_fields
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import Customer
from loyalty.db.types import utc_now
from loyalty.errors import NotFoundError, UnauthorizedError, ValidationFailedError
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.errors import outcome_error
from loyalty.http.openapi import error_responses
from loyalty.http.surface import Credentials, Surface, header, unprocessable_as_400
from loyalty.http.writes import REPLAYED_HEADER, request_idempotency
from loyalty.ledger import service as ledger_service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.schemas import CreateTransaction
from loyalty.points import format_points
from loyalty.rewards import repository as rewards_repository
from loyalty.rewards import service as rewards_service
from loyalty.rewards.customer_rewards import effective_status
from loyalty.rewards.schemas import RedeemReward
from loyalty.tiers import repository as tiers_repository

NOTE_CHARS_MAX = 500
# The profile lists this many of the customer's rewards, newest first.
PROFILE_REWARDS = 100
SECURITY_SCHEMES = {
    "AppstleApiKey": SecurityScheme(
        type="apiKey",
        name="X-API-Key",
        security_scheme_in="header",
        description="Appstle surface: an API key issued here.",
    ),
}
APPSTLE_SECURITY: list[dict[str, list[str]]] = [{name: [] for name in SECURITY_SCHEMES}]
FIELDS = {"points": "points", "description": "note"}
# The profile's rewardedFor... flags and the earn rule types behind them.
REWARDED_FLAGS = {
    "rewardedForFacebook": "follow_facebook",
    "rewardedForPinterest": "follow_pinterest",
    "rewardedForTwitter": "follow_twitter",
    "rewardedForInstagram": "follow_instagram",
    "rewardedForYoutube": "follow_youtube",
    "rewardedForTiktok": "follow_tiktok",
    "rewardedForNewsLetter": "newsletter",
    "rewardedForSms": "sms",
    "rewardedForCreatingAccount": "create_account",
    "rewardedForSharingOnFacebook": "share_facebook",
    "rewardedForSharingOnX": "share_twitter",
}
CustomerIdNumber = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class PointsChange(msgspec.Struct, rename="camel"):
    """Seed 004's add-points / remove-points body."""

    points: float
    customer_id: CustomerIdNumber | None = None
    customer_email: str | None = None
    earn_rule_id: CustomerIdNumber | None = None
    note: str | None = None


class RedeemPoints(msgspec.Struct, rename="camel"):
    redeem_rule_id: CustomerIdNumber
    customer_id: CustomerIdNumber | None = None
    customer_email: str | None = None
    points: float | None = None
    variant_id: CustomerIdNumber | None = None


class ProfileReward(msgspec.Struct, frozen=True, rename="camel"):
    id: uuid.UUID
    name: str
    reward_type: str
    status: str
    discount_code: str | None
    points_used: float
    created_at: datetime


class LoyaltyProfile(msgspec.Struct, frozen=True, omit_defaults=False):
    """Seed 004's customer loyalty profile."""

    availablePoints: float
    pendingPoints: float
    creditedPoints: float
    spentAmount: float
    storeCreditBalance: float
    achievableTierId: int | None
    currentVipTier: str | None
    vipTierExpiredAt: datetime | None
    createAt: datetime
    rewardedForFacebook: bool
    rewardedForPinterest: bool
    rewardedForTwitter: bool
    rewardedForInstagram: bool
    rewardedForYoutube: bool
    rewardedForTiktok: bool
    rewardedForNewsLetter: bool
    rewardedForSms: bool
    referredCompleted: int
    customerStatus: str
    dob: date | None
    rewards: list[ProfileReward]
    rewardedForCreatingAccount: bool
    rewardedForSharingOnFacebook: bool
    rewardedForSharingOnX: bool
    expiringPointsAmount: float
    pointsExpireAt: datetime | None


class Problem(msgspec.Struct, frozen=True):
    """Appstle's error answer (problem details)."""

    type: str
    title: str
    status: int
    detail: str
    path: str
    message: str
    errorKey: str


class RedeemRule(msgspec.Struct, frozen=True):
    id: int
    name: str
    description: str | None
    pointsRequired: float
    type: str
    status: str


def _customer(customer_id: int | None, email: str | None) -> CustomerRef:
    """customerId XOR customerEmail (Appstle answers 400 otherwise)."""
    given_email = email is not None and email.strip() != ""
    if (customer_id is None) == (not given_email):
        raise ValidationFailedError.for_field(
            "customerId", "give either customerId or customerEmail, not both and not neither"
        )
    if customer_id is not None:
        return CustomerRef(customer_id=str(customer_id))
    return CustomerRef(customer_email=email)


class AppstleController(Controller):
    path = "/api/external"
    security = APPSTLE_SECURITY
    tags = ["Appstle compatible"]

    @post(
        "/add-points",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Add points (Appstle)",
        description="`{points ≥ 0.01, customerId | customerEmail, earnRuleId?, note?}`; the "
        "points are available at once. Answers the loyalty profile.",
        responses={
            200: ResponseSpec(data_container=LoyaltyProfile),
            **error_responses(404, container=Problem),
        },
    )
    async def add_points(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[PointsChange]
    ) -> Response[Any]:
        return await _change(request, caller, sign=1)

    @post(
        "/remove-points",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Remove points (Appstle)",
        description="Same body as add-points; removes the points (never below zero).",
        responses={
            200: ResponseSpec(data_container=LoyaltyProfile),
            **error_responses(404, container=Problem),
        },
    )
    async def remove_points(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[PointsChange]
    ) -> Response[Any]:
        return await _change(request, caller, sign=-1)

    @post(
        "/redeem-points",
        opt={"scope": "rewards:write"},
        status_code=200,
        summary="Redeem a reward (Appstle)",
        description="`{redeemRuleId (the reward's number), customerId | customerEmail}`. "
        "Answers the loyalty profile, with the new reward in `rewards`.",
        responses={
            200: ResponseSpec(data_container=LoyaltyProfile),
            **error_responses(404, container=Problem),
        },
    )
    async def redeem_points(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[RedeemPoints]
    ) -> Response[Any]:
        data = await strict_body(request, RedeemPoints)
        ref = _customer(data.customer_id, data.customer_email)
        async with caller.database.read() as connection:
            reward_id = await _reward_by_number(connection, caller.merchant_id, data.redeem_rule_id)
            if data.points is not None:
                cost = await _reward_cost(connection, caller.merchant_id, reward_id)
                if data.points != cost:
                    raise ValidationFailedError.for_field(
                        "points", f"must be the reward's cost ({cost:g}) when given"
                    )
        key, fingerprint = await request_idempotency(request)
        outcome = await rewards_service.redeem(
            caller.ledger_writer,
            caller.merchant_id,
            ref,
            RedeemReward(reward_id=str(reward_id)),
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return await _profile_answer(caller, ref, outcome, request.url.path)

    @get(
        "/customer-loyalty",
        opt={"scope": "customers:read"},
        summary="A customer's loyalty profile (Appstle)",
        responses={
            200: ResponseSpec(data_container=LoyaltyProfile),
            **error_responses(404, container=Problem),
        },
    )
    async def customer_loyalty(
        self,
        caller: CurrentCaller,
        customer_id: CustomerIdNumber | None = Parameter(
            default=None, description="The customer's platform id."
        ),
        email: str | None = Parameter(default=None, max_length=254),
    ) -> LoyaltyProfile:
        ref = _customer(customer_id, email)
        return await _profile(caller, ref)

    @get(
        "/point-redeem-rules",
        opt={"scope": "rewards:read"},
        summary="The rewards catalogue (Appstle)",
        responses=error_responses(container=Problem),
    )
    async def point_redeem_rules(self, caller: CurrentCaller) -> list[RedeemRule]:
        async with caller.database.read() as connection:
            rows = await repository.list_catalogue(connection, caller.merchant_id)
            return [
                RedeemRule(
                    id=row.number,
                    name=row.name,
                    description=row.description,
                    pointsRequired=format_points(row.points_cost_minor),
                    type=row.reward_type.upper(),
                    status="ACTIVE" if row.active else "INACTIVE",
                )
                for row in rows
            ]


async def _change(
    request: Request[Any, Any, Any], caller: CurrentCaller, *, sign: int
) -> Response[Any]:
    with renamed_fields(FIELDS):
        data = await strict_body(request, PointsChange)
        if data.points < 0.01:
            raise ValidationFailedError.for_field("points", "must be at least 0.01")
        if data.note is not None and len(data.note) > NOTE_CHARS_MAX:
            raise ValidationFailedError.for_field(
                "note", f"must be at most {NOTE_CHARS_MAX} characters"
            )
        ref = _customer(data.customer_id, data.customer_email)
        key, fingerprint = await request_idempotency(request)
        native = CreateTransaction(
            points=sign * data.points,
            description=data.note or "",
            # Added points count as earned (lifetime); removed ones do not.
            apply_to_lifetime=sign > 0,
        )
        outcome = await ledger_service.adjust_points(
            caller.ledger_writer,
            caller.merchant_id,
            ref,
            native,
            idempotency_key=key,
            request_fingerprint=fingerprint,
            description_chars_max=NOTE_CHARS_MAX,
        )
    return await _profile_answer(caller, ref, outcome, request.url.path)


async def _profile_answer(
    caller: CurrentCaller, ref: CustomerRef, outcome: Outcome, path: str
) -> Response[Any]:
    """The profile after a write, or the write's error in Appstle's shape."""
    if outcome.status_code >= 400:
        return outcome_error(SURFACE, outcome, path)
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
    return Response(content=await _profile(caller, ref), status_code=200, headers=headers)


async def _reward_by_number(
    connection: AsyncConnection, merchant_id: uuid.UUID, number: int
) -> uuid.UUID:
    found = await repository.reward_id_by_number(connection, merchant_id, number)
    if found is None:
        raise RedeemRuleNotFoundError(f"No redeem rule {number}.", {"redeemRuleId": number})
    return found


async def _reward_cost(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: uuid.UUID
) -> float:
    row = await rewards_repository.get(connection, merchant_id, reward_id)
    if row is None:
        # Unreachable (the reward was just found in this snapshot, and rewards are only
        # ever soft-deleted); kept as the single-row read's failure.
        raise NoResultFound("No row was found when one was required")
    return format_points(row.points_cost_minor)


class RedeemRuleNotFoundError(NotFoundError):
    code = "reward_not_found"


async def _profile(caller: CurrentCaller, ref: CustomerRef) -> LoyaltyProfile:
    customer = await customers_service.get_customer(caller.database, caller.merchant_id, ref)
    async with caller.database.read() as connection:
        return await _build_profile(connection, caller.merchant_id, customer)


async def _build_profile(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer: Customer
) -> LoyaltyProfile:
    now = utc_now()
    rows = await repository.list_customer_rewards(
        connection, merchant_id, customer.id, limit=PROFILE_REWARDS
    )
    achievable = None
    if customer.next_tier is not None:
        ordered = await tiers_repository.list_tiers(connection, merchant_id)
        positions = {row.id: index for index, row in enumerate(ordered, start=1)}
        achievable = positions.get(customer.next_tier.id)
    rewarded = set(customer.rewarded_actions)
    flags = {flag: action in rewarded for flag, action in REWARDED_FLAGS.items()}
    return LoyaltyProfile(
        availablePoints=customer.points_balance,
        pendingPoints=customer.pending_points,
        creditedPoints=customer.lifetime_points,
        spentAmount=customer.total_spent,
        storeCreditBalance=customer.store_credit_balance,
        achievableTierId=achievable,
        currentVipTier=None if customer.tier is None else customer.tier.name,
        vipTierExpiredAt=customer.tier_expires_at,
        createAt=customer.created_at,
        referredCompleted=customer.referred_completed,
        customerStatus=customer.status.upper(),
        dob=customer.date_of_birth,
        rewards=[
            ProfileReward(
                id=row.id,
                name=row.reward_name,
                reward_type=row.reward_type,
                status=effective_status(row.status, row.expires_at, now).upper(),
                discount_code=row.discount_code,
                points_used=format_points(row.points_used_minor),
                created_at=row.created_at,
            )
            for row in rows
        ],
        expiringPointsAmount=customer.expiring_points,
        pointsExpireAt=customer.points_expire_at,
        **flags,
    )


_encoder = msgspec.json.Encoder()


def credentials(headers: Mapping[str, str], query: Mapping[str, Any]) -> Credentials:
    token = header(headers, "x-api-key")
    if not token:
        raise UnauthorizedError("Send your API key in the 'X-API-Key' header.")
    return Credentials(token)


def error_body(status_code: int, code: str, message: str, details: Any, path: str) -> bytes:
    """Problem details (title, status, detail), as Appstle answers."""
    return _encoder.encode(
        {
            "type": "about:blank",
            "title": code.replace("_", " ").capitalize(),
            "status": status_code,
            "detail": message,
            "path": path,
            "message": f"error.{code}",
            "errorKey": code,
        }
    )


SURFACE = Surface(
    name="appstle",
    prefix="/api/external/",
    credentials=credentials,
    error_body=error_body,
    security_schemes=SECURITY_SCHEMES,
    controllers=(AppstleController,),
    status=unprocessable_as_400,
)
