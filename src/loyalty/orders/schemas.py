from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from loyalty.customers.schemas import CustomerIdText, EmailText, NameText

OrderStatus = Literal["placed", "partially_refunded", "refunded"]
OrderIdText = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, description="The shop's order id.")
]
Money = Annotated[
    float, msgspec.Meta(ge=0, le=1e12, description="In the shop's currency, 2 decimals.")
]
CurrencyCode = Annotated[
    str, msgspec.Meta(min_length=3, max_length=3, description="ISO 4217 code, e.g. USD.")
]
DiscountCode = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class PlaceOrderBody(msgspec.Struct, forbid_unknown_fields=True):
    """An order of the shop. Posting the same order again answers 200 with the
    order and changes nothing; the same ``order_id`` with other content is 422
    ``order_conflict``. The customer is enrolled if needed (with ``email``,
    ``first_name``, ``last_name`` when new)."""

    order_id: OrderIdText
    customer_id: CustomerIdText
    total: Money
    currency: CurrencyCode
    discount_codes: Annotated[list[DiscountCode], msgspec.Meta(max_length=20)] = []
    placed_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    email: EmailText | None = None
    first_name: NameText | None = None
    last_name: NameText | None = None
    # The referral code the customer came with (honoured before its first order).
    referral_code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] | None = None


class RefundBody(msgspec.Struct, forbid_unknown_fields=True):
    """Refund ``amount`` of the order (left out: all that is left, e.g. a cancellation)."""

    amount: Annotated[float, msgspec.Meta(gt=0, le=1e12)] | None = None


class Order(msgspec.Struct, frozen=True):
    id: uuid.UUID
    order_id: str
    # The buyer's platform id; null once the buyer is erased (the order stays).
    customer_id: str | None
    total: float
    currency: str
    discount_codes: list[str]
    status: OrderStatus
    refunded: float
    # What the order earned, and where those points are now:
    # points_earned = points_pending + points_released + points_cancelled.
    points_earned: float
    points_pending: float  # still held (the purchase rule's pending days)
    points_released: float  # credited to the balance (at once, or when the hold ended)
    points_cancelled: float  # taken off the hold before release: by refunds or by hand
    # Debited from the balance by refunds (out of points_released; what a refund could
    # not take because the customer had spent it is the refund's shortfall).
    points_removed: float
    # Where the points went: a pending credit (held) or a ledger entry.
    pending_credit_id: uuid.UUID | None
    transaction_id: uuid.UUID | None
    earn_rule_id: uuid.UUID | None
    # Why the order earned nothing: no_purchase_rule, rule_inactive, below_minimum,
    # customer_inactive, customer_excluded, customer_excluded_by_customer, nothing_to_earn.
    not_earned_reason: str | None
    placed_at: datetime
    created_at: datetime
    updated_at: datetime


class OrderResult(Order, frozen=True):
    points_balance: float
    pending_points: float


class OrderEnvelope(msgspec.Struct, frozen=True):
    data: OrderResult


class Refund(msgspec.Struct, frozen=True):
    id: uuid.UUID
    order_id: str
    amount: float
    # Taken from the available balance (a ledger debit), from the hold, and what
    # the customer had already spent (not taken: balances never go negative).
    points_removed: float
    points_cancelled: float
    shortfall: float
    transaction_id: uuid.UUID | None
    created_at: datetime
    order: Order


class RefundResult(Refund, frozen=True):
    points_balance: float
    pending_points: float


class RefundEnvelope(msgspec.Struct, frozen=True):
    data: RefundResult


class EstimateBody(msgspec.Struct, forbid_unknown_fields=True):
    """A cart: what would it earn? With ``customer_id`` the customer's status and
    tier multiplier count; without, a guest (active, no tier)."""

    total: Money
    currency: CurrencyCode | None = None
    customer_id: CustomerIdText | None = None


class Estimate(msgspec.Struct, frozen=True):
    points: float
    # Days the points would be held as pending, if the purchase rule holds them.
    pending_days: int | None
    multiplier: float
    earn_rule_id: uuid.UUID | None
    not_earned_reason: str | None


class EstimateEnvelope(msgspec.Struct, frozen=True):
    data: Estimate
