"""Orders and refunds as ledger operations.

An order is recorded, earns its points (a credit, or a hold for the purchase
rule's pending days), adds to the customer's total spent and marks the
customer rewards whose discount codes it used, all in the batch transaction
that holds the customer's balance lock: an order is recorded and earns
exactly once however often it is posted. A refund takes back the order's
points in proportion to the money refunded: from the hold while the points
are pending, else by a debit that counts against lifetime, never below zero
(what the customer already spent is recorded as the refund's shortfall).
Pure planning here; the stores load the ``OrderContext`` and write the
``OrderWrites``.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

from loyalty.errors import BusinessRuleError, NotFoundError
from loyalty.points import MINOR_PER_POINT

if TYPE_CHECKING:
    from loyalty.ledger.batch import LockedCustomer, Movement

OrderKey = tuple[uuid.UUID, str]  # (merchant_id, order_id)

ORDER_COLUMNS = (
    "merchant_id", "id", "order_id", "customer_id", "total_minor", "currency", "discount_codes",
    "fingerprint", "status", "refunded_minor", "points_earned_minor", "points_removed_minor",
    "pending_id", "transaction_id", "earn_rule_id", "not_earned_reason", "placed_at",
    "created_at", "updated_at",
)  # fmt: skip
REFUND_COLUMNS = (
    "merchant_id", "id", "order_row_id", "amount_minor", "points_removed_minor",
    "points_cancelled_minor", "shortfall_minor", "transaction_id", "created_at",
)  # fmt: skip


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderConflictError(BusinessRuleError):
    code = "order_conflict"


class RefundExceedsOrderError(BusinessRuleError):
    code = "refund_exceeds_order"


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    order_id: str
    total_minor: int
    currency: str
    discount_codes: tuple[str, ...]
    placed_at: datetime
    # Over the order's content: the same order_id with other content is a conflict.
    fingerprint: str


@dataclass(frozen=True, slots=True)
class RefundOrder:
    order_id: str
    amount_minor: int | None  # None: everything not yet refunded


OrderOperation = PlaceOrder | RefundOrder


@dataclass(frozen=True, slots=True)
class PurchaseRule:
    id: uuid.UUID
    points_minor: int
    active: bool
    rate_minor: int
    rounding: str
    min_order_total_minor: int | None
    pending_days: int | None


@dataclass(frozen=True, slots=True)
class ReferralRule:
    id: uuid.UUID
    points_minor: int  # the referrer's
    referee_points_minor: int
    active: bool
    max_per_customer: int | None


@dataclass(slots=True)
class OrderContext:
    # Orders named by the batch, as column values (changed in place).
    orders: dict[OrderKey, dict[str, Any]] = field(default_factory=dict)
    rules: dict[uuid.UUID, PurchaseRule] = field(default_factory=dict)
    referral_rules: dict[uuid.UUID, ReferralRule] = field(default_factory=dict)
    # Customer rewards by (merchant_id, discount_code), locked, as column values.
    codes: dict[tuple[uuid.UUID, str], dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class OrderWrites:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    # (merchant_id, customer_id) -> change of total spent.
    spend: defaultdict[tuple[uuid.UUID, uuid.UUID], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    # (merchant_id, customer_reward_id, order_id)
    rewards_used: list[tuple[uuid.UUID, uuid.UUID, str]] = field(default_factory=list)
    # (merchant_id, referee customer_id, referrer customer_id) of completed referrals.
    referrals: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = field(default_factory=list)
    new_orders: set[OrderKey] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.refunds or self.spend or self.referrals)

    def changed(self, key: OrderKey, row: dict[str, Any]) -> None:
        """An order changed after it was loaded (a new one is inserted as it ends up)."""
        if key not in self.new_orders and row not in self.updates:
            self.updates.append(row)


def order_keys(movements: list[Movement]) -> list[OrderKey]:
    return sorted({(m.merchant_id, m.order.order_id) for m in movements if m.order is not None})


def rule_merchants(movements: list[Movement]) -> list[uuid.UUID]:
    return sorted({m.merchant_id for m in movements if isinstance(m.order, PlaceOrder)})


def code_keys(movements: list[Movement]) -> list[tuple[uuid.UUID, str]]:
    return sorted(
        {
            (m.merchant_id, code)
            for m in movements
            if isinstance(m.order, PlaceOrder)
            for code in m.order.discount_codes
        }
    )


def pending_of_orders(context: OrderContext) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Holds of the loaded orders (a refund may take points back from them)."""
    return sorted(
        {
            (row["merchant_id"], row["pending_id"])
            for row in context.orders.values()
            if row["pending_id"] is not None
        }
    )


def _rounded(units: Fraction, rounding: str) -> int:
    if rounding == "up":
        return math.ceil(units)
    if rounding == "nearest":
        return math.floor(units + Fraction(1, 2))  # half up
    return math.floor(units)


class Buyer(Protocol):
    """What the purchase rule looks at: the customer's status and the programme's decimals."""

    @property
    def status(self) -> str: ...

    @property
    def points_decimals(self) -> int: ...


def purchase_points(
    rule: PurchaseRule | None,
    locked: Buyer,
    total_minor: int,
    multiplier_hundredths: int,
) -> tuple[int, str | None]:
    """The points an order earns (minor units) and, when none, why not."""
    if rule is None:
        return 0, "no_purchase_rule"
    if not rule.active:
        return 0, "rule_inactive"
    if locked.status != "active":
        return 0, f"customer_{locked.status}"
    if rule.min_order_total_minor is not None and total_minor < rule.min_order_total_minor:
        return 0, "below_minimum"
    # total (hundredths of money) x rate (hundredths of points per unit) = points x 10^4 / 100
    exact = Fraction(total_minor * rule.rate_minor, 100) * Fraction(multiplier_hundredths, 100)
    quantum = MINOR_PER_POINT // 10**locked.points_decimals
    points = _rounded(exact / quantum, rule.rounding) * quantum + rule.points_minor
    return points, None if points > 0 else "nothing_to_earn"


def points_to_take_back(row: dict[str, Any], refunded_after: int, decimals: int) -> int:
    """How many of the order's points the refunds so far stand for, in total."""
    earned: int = row["points_earned_minor"]
    total: int = row["total_minor"]
    if refunded_after >= total:
        return earned
    quantum = MINOR_PER_POINT // 10**decimals
    share = Fraction(earned * refunded_after, total * quantum)
    taken: int = math.floor(share) * quantum
    return taken


def new_order_row(
    operation: PlaceOrder,
    locked: LockedCustomer,
    *,
    order_row_id: uuid.UUID,
    encoded_codes: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "merchant_id": locked.merchant_id,
        "id": order_row_id,
        "order_id": operation.order_id,
        "customer_id": locked.customer_id,
        "total_minor": operation.total_minor,
        "currency": operation.currency,
        "discount_codes": encoded_codes,
        "fingerprint": operation.fingerprint,
        "status": "placed",
        "refunded_minor": 0,
        "points_earned_minor": 0,
        "points_removed_minor": 0,
        "pending_id": None,
        "transaction_id": None,
        "earn_rule_id": None,
        "not_earned_reason": None,
        "placed_at": operation.placed_at,
        "created_at": now,
        "updated_at": now,
    }


def add_rule(context: OrderContext, row: dict[str, Any]) -> None:
    """A purchase or referral rule row, as the batch needs it."""
    if row["type"] == "purchase":
        context.rules[row["merchant_id"]] = PurchaseRule(
            row["id"], row["points_minor"], bool(row["active"]),
            row["points_per_currency_unit_minor"], row["rounding"],
            row["min_order_total_minor"], row["pending_days"],
        )  # fmt: skip
    else:
        context.referral_rules[row["merchant_id"]] = ReferralRule(
            row["id"], row["points_minor"], row["referee_points_minor"] or 0,
            bool(row["active"]), row["max_per_customer"],
        )  # fmt: skip


def referrer_counts(writes: OrderWrites) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """(merchant_id, referrer, referrals completed in the batch)."""
    counts: defaultdict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
    for merchant_id, _, referrer in writes.referrals:
        counts[(merchant_id, referrer)] += 1
    return [(m, c, n) for (m, c), n in counts.items()]


def customer_changes(
    writes: OrderWrites,
) -> list[tuple[uuid.UUID, uuid.UUID, int, bool, int]]:
    """(merchant, customer, spend change, referral completed as referee, referrals made)."""
    rows: dict[tuple[uuid.UUID, uuid.UUID], list[Any]] = {}
    for key, amount in writes.spend.items():
        rows.setdefault(key, [0, False, 0])[0] += amount
    for merchant_id, referee, referrer in writes.referrals:
        rows.setdefault((merchant_id, referee), [0, False, 0])[1] = True
        rows.setdefault((merchant_id, referrer), [0, False, 0])[2] += 1
    return [(m, c, spent, referee, referred) for (m, c), (spent, referee, referred) in rows.items()]
