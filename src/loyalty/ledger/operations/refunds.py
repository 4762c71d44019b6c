"""Refunds: an order's points taken back in proportion to the money refunded.

From the hold while the points are pending, else by a debit that counts
against lifetime, never below zero (what the customer already spent is
recorded as the refund's shortfall).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Sequence
from fractions import Fraction

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.errors import BusinessRuleError
from loyalty.ledger.engine import lifecycle
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import LockedCustomer, OrderRow, PendingRow, RefundRow
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.ledger.operations.orders import (
    DESCRIPTION_CHARS_MAX,
    OrderNotFoundError,
    order_hold,
    order_view,
)
from loyalty.orders.schemas import Refund, RefundEnvelope, RefundResult
from loyalty.points import MINOR_PER_POINT, format_points


class RefundExceedsOrderError(BusinessRuleError):
    code = "refund_exceeds_order"


@dataclasses.dataclass(frozen=True, slots=True)
class RefundOrder:
    customer: CustomerRef
    order_id: str
    amount_minor: int | None  # None: everything not yet refunded

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.orders.add((merchant_id, self.order_id))
        order = snapshot.orders.peek((merchant_id, self.order_id))
        if order is not None and order.pending_id is not None:
            want.pending.add((merchant_id, order.pending_id))

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        row = tx.snapshot.orders.get((merchant_id, self.order_id))
        if row is None or row.customer_id != locked.customer_id:
            raise OrderNotFoundError(f"No order {self.order_id!r}.", {"order_id": self.order_id})
        refundable = row.total_minor - row.refunded_minor
        amount = refundable if self.amount_minor is None else self.amount_minor
        if amount > refundable or amount == 0:
            raise RefundExceedsOrderError(
                "The refund is larger than what is left to refund on this order."
                if refundable
                else "This order is already fully refunded.",
                {"refundable": format_points(refundable), "amount": format_points(amount)},
            )
        refunded_after = row.refunded_minor + amount
        target = points_to_take_back(row, refunded_after, locked.points_decimals)
        to_take = target - row.refund_points_minor
        removed = cancelled = shortfall = 0
        transaction_id: uuid.UUID | None = None
        hold = order_hold(tx, row)
        if to_take > 0:
            # A hold cancelled by hand has nothing left to take: the refund takes nothing.
            if hold is not None and hold.status == "pending":
                cancelled = min(to_take, hold.remaining_minor)
                tx.shrink_hold(locked, hold, cancelled)
            elif hold is None or hold.status == "released":
                removed = min(to_take, locked.points_balance_minor)
                shortfall = to_take - removed
                if removed:
                    transaction_id = tx.post(
                        locked,
                        Posting(
                            points_minor=-removed,
                            kind="refund",
                            description=f"Points removed: order {self.order_id} refunded"[
                                :DESCRIPTION_CHARS_MAX
                            ],
                            apply_to_lifetime=True,
                            earn_rule_id=row.earn_rule_id,
                        ),
                    ).transaction_id
        now = tx.now
        row.refunded_minor = refunded_after
        row.refund_points_minor = target
        row.points_removed_minor += removed
        row.status = "refunded" if refunded_after == row.total_minor else "partially_refunded"
        row.updated_at = now
        tx.changes.orders.update(row)
        locked.total_spent_minor -= amount
        lifecycle.add_to_window(
            tx.window(locked), locked, "amount_spent", -amount, row.placed_at, now
        )
        locked.touched = True
        refund = RefundRow(
            merchant_id=merchant_id,
            id=tx.new_id(),
            order_row_id=row.id,
            amount_minor=amount,
            points_removed_minor=removed,
            points_cancelled_minor=cancelled,
            shortfall_minor=shortfall,
            transaction_id=transaction_id,
            created_at=now,
        )
        tx.changes.refunds.append(refund)
        tx.event(
            locked,
            "order.refunded",
            row.id,
            {
                "refund": refund_view(refund, row, locked.external_id, hold),
                "order": order_view(row, locked.external_id, hold),
            },
        )
        return Result(201, refund_reply(refund, row, locked, hold))


def points_to_take_back(row: OrderRow, refunded_after: int, decimals: int) -> int:
    """How many of the order's points the refunds so far stand for, in total."""
    earned = row.points_earned_minor
    total = row.total_minor
    if refunded_after >= total:
        return earned
    quantum = MINOR_PER_POINT // 10**decimals
    share = Fraction(earned * refunded_after, total * quantum)
    taken: int = math.floor(share) * quantum
    return taken


def refund_view(
    refund: RefundRow, row: OrderRow, customer_id: str | None, hold: PendingRow | None
) -> Refund:
    return Refund(
        id=refund.id,
        order_id=row.order_id,
        amount=format_points(refund.amount_minor),
        points_removed=format_points(refund.points_removed_minor),
        points_cancelled=format_points(refund.points_cancelled_minor),
        shortfall=format_points(refund.shortfall_minor),
        transaction_id=refund.transaction_id,
        created_at=refund.created_at,
        order=order_view(row, customer_id, hold),
    )


def refund_reply(
    refund: RefundRow, row: OrderRow, locked: LockedCustomer, hold: PendingRow | None
) -> RefundEnvelope:
    return RefundEnvelope(
        data=RefundResult(
            **msgspec.structs.asdict(refund_view(refund, row, locked.external_id, hold)),
            points_balance=format_points(locked.points_balance_minor),
            pending_points=format_points(locked.pending_points_minor),
        )
    )
