"""Orders: the shop posts them, the ledger writer records them and earns their points."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import repository as customers_repository
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef, customer_not_found
from loyalty.customers.schemas import EnrolCustomer
from loyalty.customers.service import CustomerEmailTakenError
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.earning import repository as earning_repository
from loyalty.errors import ValidationFailedError
from loyalty.ledger import service as ledger_service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.engine.rows import EarnRuleRow, columns
from loyalty.ledger.operations.orders import OrderNotFoundError, PlaceOrder, purchase_points
from loyalty.ledger.operations.refunds import RefundOrder
from loyalty.ledger.writer import LedgerWriter
from loyalty.merchants import repository as merchants_repository
from loyalty.orders import repository
from loyalty.orders.currencies import CURRENCIES
from loyalty.orders.schemas import Estimate, EstimateBody, PlaceOrderBody, RefundBody
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_field

# An order's time may run ahead of ours by this much (clocks differ), not more.
CLOCK_SKEW = timedelta(minutes=5)


def _money(value: float, field: str) -> int:
    return parse_field(value, MAXIMUM_DECIMALS, field)


def fingerprint(body: PlaceOrderBody, external_id: str, total_minor: int, codes: list[str]) -> str:
    """The order's content (not the customer's profile fields)."""
    content = {
        "customer_id": external_id,
        "total_minor": total_minor,
        "currency": body.currency.upper(),
        "discount_codes": sorted(codes),
        "placed_at": None if body.placed_at is None else body.placed_at.isoformat(),
    }
    return hashlib.sha256(msgspec.json.encode(content)).hexdigest()


async def _enrol_if_new(
    database: Database, merchant_id: uuid.UUID, external_id: str, body: PlaceOrderBody
) -> None:
    async with database.read() as connection:
        found = await customers_repository.find_id_by_external_id(
            connection, merchant_id, external_id
        )
    if found is not None:
        if body.referral_code is not None:
            # A known customer may still be referred before its first order.
            referred = EnrolCustomer(customer_id=external_id, referral_code=body.referral_code)
            await database.transaction(
                lambda connection: customers_service.enrol_customer(
                    connection, merchant_id, referred
                )
            )
        return

    async def enrol(connection: AsyncConnection, with_email: bool) -> None:
        data = EnrolCustomer(customer_id=external_id, first_name=body.first_name,
                             last_name=body.last_name)  # fmt: skip
        if with_email and body.email is not None:
            data.email = body.email
        if body.referral_code is not None:
            data.referral_code = body.referral_code
        await customers_service.enrol_customer(connection, merchant_id, data)

    try:
        await database.transaction(lambda connection: enrol(connection, True))
    except CustomerEmailTakenError:
        # The address belongs to another customer: the order still counts for this one.
        await database.transaction(lambda connection: enrol(connection, False))


async def place_order(
    database: Database,
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    body: PlaceOrderBody,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    external_id = customers_service.normalise_external_id(body.customer_id)
    order_id = body.order_id.strip()
    if not order_id:
        raise ValidationFailedError.for_field("order_id", "must not be blank")
    currency = body.currency.upper()
    if currency not in CURRENCIES:
        raise ValidationFailedError.for_field("currency", "is not an ISO 4217 currency code")
    async with database.read() as connection:
        settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    if currency != settings.currency:
        raise ValidationFailedError.for_field(
            "currency", f"must be the programme's currency ({settings.currency})"
        )
    total_minor = _money(body.total, "total")
    codes = sorted({code.strip().upper() for code in body.discount_codes if code.strip()})
    now = utc_now()
    if body.placed_at is not None and body.placed_at > now + CLOCK_SKEW:
        raise ValidationFailedError.for_field("placed_at", "must not be in the future")
    if body.email is not None:
        customers_service.normalise_email(body.email)
    await _enrol_if_new(database, merchant_id, external_id, body)
    async with database.read() as connection:
        referrer = await customers_repository.pending_referrer(connection, merchant_id, external_id)
    return await ledger_service.move_points(
        writer,
        merchant_id,
        PlaceOrder(
            customer=CustomerRef(customer_id=external_id),
            order_id=order_id,
            total_minor=total_minor,
            currency=currency,
            discount_codes=tuple(codes),
            placed_at=body.placed_at or now,
            fingerprint=fingerprint(body, external_id, total_minor, codes),
            # A referral not yet completed: the referrer is rewarded in the same transaction.
            referrer=None if referrer is None else CustomerRef(internal_id=referrer),
        ),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


async def refund_order(
    database: Database,
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    order_id: str,
    body: RefundBody,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    amount_minor = None if body.amount is None else _money(body.amount, "amount")
    async with database.read() as connection:
        customer_id = await repository.customer_of_order(connection, merchant_id, order_id)
    if customer_id is None:
        raise OrderNotFoundError(f"No order {order_id!r}.", {"order_id": order_id})
    return await ledger_service.move_points(
        writer,
        merchant_id,
        # By UUID: an erased customer's orders can still be refunded.
        RefundOrder(CustomerRef(internal_id=customer_id), order_id, amount_minor),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


@dataclass(frozen=True, slots=True)
class _Buyer:
    """What the earning rule looks at, for an estimate."""

    status: str
    points_decimals: int


async def estimate(database: Database, merchant_id: uuid.UUID, body: EstimateBody) -> Estimate:
    """The points a cart would earn now (nothing is written)."""
    total_minor = _money(body.total, "total")
    async with database.read() as connection:
        settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
        if body.currency is not None and body.currency.upper() != settings.currency:
            raise ValidationFailedError.for_field(
                "currency", f"must be the programme's currency ({settings.currency})"
            )
        rule_row = await earning_repository.find_by_type(connection, merchant_id, "purchase")
        status, multiplier = "active", 100
        if body.customer_id is not None:
            external_id = customers_service.normalise_external_id(body.customer_id)
            found = await repository.buyer(connection, merchant_id, external_id)
            if found is None:
                raise customer_not_found(CustomerRef(customer_id=external_id))
            status = found.status
            multiplier = found.multiplier_hundredths or 100
    rule = None
    if rule_row is not None:
        rule = EarnRuleRow(**{column: getattr(rule_row, column) for column in columns(EarnRuleRow)})
    buyer = _Buyer(status, settings.points_decimals)
    points, reason = purchase_points(rule, buyer, total_minor, multiplier)
    return Estimate(
        points=format_points(points),
        pending_days=rule.pending_days if rule is not None and points else None,
        multiplier=format_points(multiplier),
        earn_rule_id=rule.id if rule is not None else None,
        not_earned_reason=reason,
    )
