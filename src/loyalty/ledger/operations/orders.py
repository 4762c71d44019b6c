"""Orders as a ledger operation.

An order is recorded, earns its points (a credit, or a hold for the purchase
rule's pending days), adds to the customer's total spent, marks the customer
rewards whose discount codes it used and completes the customer's referral,
all under the customer's balance lock: an order is recorded and earns
exactly once however often it is posted.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Protocol

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.errors import BusinessRuleError, NotFoundError
from loyalty.ledger.engine import lifecycle
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import EarnRuleRow, LockedCustomer, OrderRow, PendingRow
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.ledger.operations import referrals
from loyalty.ledger.operations.redemptions import event_payload as reward_payload
from loyalty.orders.schemas import Order, OrderEnvelope, OrderResult
from loyalty.points import MINOR_PER_POINT, format_points
from loyalty.rewards.customer_rewards import ACTIVE, effective_status, to_detail

DESCRIPTION_CHARS_MAX = 255


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"


class OrderConflictError(BusinessRuleError):
    code = "order_conflict"


@dataclasses.dataclass(frozen=True, slots=True)
class PlaceOrder:
    customer: CustomerRef
    order_id: str
    total_minor: int
    currency: str
    discount_codes: tuple[str, ...]
    placed_at: datetime
    # Over the order's content: the same order_id with other content is a conflict.
    fingerprint: str
    # A referral not yet completed: the referrer is rewarded in the same transaction.
    referrer: CustomerRef | None = None

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,) if self.referrer is None else (self.customer, self.referrer)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.orders.add((merchant_id, self.order_id))
        existing = snapshot.orders.peek((merchant_id, self.order_id))
        if existing is not None and existing.pending_id is not None:
            want.pending.add((merchant_id, existing.pending_id))  # posted again: its figures
        want.earn_rules.add((merchant_id, "purchase"))
        want.earn_rules.add((merchant_id, "referral"))
        for code in self.discount_codes:
            want.reward_codes.add((merchant_id, code))

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        key = (merchant_id, self.order_id)
        existing = tx.snapshot.orders.get(key)
        if existing is not None:
            if (
                existing.fingerprint != self.fingerprint
                or existing.customer_id != locked.customer_id
            ):
                raise OrderConflictError(
                    "An order with this order_id was already posted with other content.",
                    {"order_id": self.order_id},
                )
            # Posted again: no effect.
            return Result(200, order_reply(existing, locked, order_hold(tx, existing)))
        rule = tx.snapshot.earn_rules.get((merchant_id, "purchase"))
        multiplier = 100
        if locked.tier_id is not None:
            for tier in tx.snapshot.tiers.get(merchant_id) or []:
                if tier.id == locked.tier_id:
                    multiplier = tier.multiplier_hundredths
        points, reason = purchase_points(rule, locked, self.total_minor, multiplier)
        now = tx.now
        row = OrderRow(
            merchant_id=merchant_id,
            id=tx.new_id(),
            order_id=self.order_id,
            customer_id=locked.customer_id,
            total_minor=self.total_minor,
            currency=self.currency,
            discount_codes=msgspec.json.encode(list(self.discount_codes)).decode(),
            fingerprint=self.fingerprint,
            status="placed",
            refunded_minor=0,
            points_earned_minor=0,
            points_removed_minor=0,
            refund_points_minor=0,
            pending_id=None,
            transaction_id=None,
            earn_rule_id=None,
            not_earned_reason=reason,
            placed_at=self.placed_at,
            created_at=now,
            updated_at=now,
        )
        if points > 0:
            assert rule is not None
            posting = Posting(
                points_minor=points,
                kind="earn",
                description=f"Order {self.order_id}"[:DESCRIPTION_CHARS_MAX],
                apply_to_lifetime=True,
                earn_rule_id=rule.id,
            )
            row.points_earned_minor, row.earn_rule_id = points, rule.id
            if rule.pending_days:
                available_at = now + timedelta(days=rule.pending_days)
                row.pending_id = tx.hold(locked, posting, available_at).id
            else:
                row.transaction_id = tx.post(locked, posting).transaction_id
        locked.total_spent_minor += self.total_minor
        lifecycle.add_to_window(
            tx.window(locked), locked, "amount_spent", self.total_minor, self.placed_at, now
        )
        locked.touched = True
        for code in self.discount_codes:
            use_code(tx, locked, code, self.order_id)
        referrals.complete(tx, locked, self.order_id)
        tx.snapshot.orders.found(key, row)
        tx.changes.orders.insert(row)
        hold = order_hold(tx, row)
        tx.event(
            locked, "order.placed", row.id, {"order": order_view(row, locked.external_id, hold)}
        )
        return Result(201, order_reply(row, locked, hold))


def use_code(tx: BatchTx, locked: LockedCustomer, code: str, order_id: str) -> None:
    """Mark the customer reward behind a discount code used (if it is still active)."""
    held = tx.snapshot.reward_codes.get((locked.merchant_id, code))
    if held is None or effective_status(held.status, held.expires_at, tx.now) != ACTIVE:
        return
    held.status, held.used_at, held.order_id, held.updated_at = "used", tx.now, order_id, tx.now
    tx.changes.customer_rewards.update(held)
    detail = to_detail(held, locked.external_id, tx.now)
    tx.event(locked, "customer_reward.used", held.id, reward_payload(detail))


def _rounded(units: Fraction, rounding: str | None) -> int:
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
    rule: EarnRuleRow | None,
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
    rate = rule.points_per_currency_unit_minor or 0
    exact = Fraction(total_minor * rate, 100) * Fraction(multiplier_hundredths, 100)
    quantum = MINOR_PER_POINT // 10**locked.points_decimals
    points = _rounded(exact / quantum, rule.rounding) * quantum + rule.points_minor
    return points, None if points > 0 else "nothing_to_earn"


def order_points(row: OrderRow, hold: PendingRow | None) -> tuple[int, int, int]:
    """(pending, released, cancelled) of the order's points: its hold says, if it has one."""
    if hold is None:
        return 0, row.points_earned_minor, 0
    left = hold.remaining_minor
    return (
        left if hold.status == "pending" else 0,
        left if hold.status == "released" else 0,
        hold.points_cancelled_minor,
    )


def order_hold(tx: BatchTx, row: OrderRow) -> PendingRow | None:
    if row.pending_id is None:
        return None
    return tx.snapshot.pending.get((row.merchant_id, row.pending_id))


def order_view(row: OrderRow, customer_id: str | None, hold: PendingRow | None) -> Order:
    """The order as the API shows it (``customer_id``: the buyer's platform id, None
    once erased; ``hold``: its pending credit, if it has one)."""
    pending, released, cancelled = order_points(row, hold)
    return Order(
        id=row.id,
        order_id=row.order_id,
        customer_id=customer_id,
        total=format_points(row.total_minor),
        currency=row.currency,
        discount_codes=msgspec.json.decode(row.discount_codes),
        status=row.status,  # type: ignore[arg-type]
        refunded=format_points(row.refunded_minor),
        points_earned=format_points(row.points_earned_minor),
        points_pending=format_points(pending),
        points_released=format_points(released),
        points_cancelled=format_points(cancelled),
        points_removed=format_points(row.points_removed_minor),
        pending_credit_id=row.pending_id,
        transaction_id=row.transaction_id,
        earn_rule_id=row.earn_rule_id,
        not_earned_reason=row.not_earned_reason,
        placed_at=row.placed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def order_reply(row: OrderRow, locked: LockedCustomer, hold: PendingRow | None) -> OrderEnvelope:
    return OrderEnvelope(
        data=OrderResult(
            **msgspec.structs.asdict(order_view(row, locked.external_id, hold)),
            points_balance=format_points(locked.points_balance_minor),
            pending_points=format_points(locked.pending_points_minor),
        )
    )
