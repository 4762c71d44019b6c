"""Completing a referral: a referred customer's first order rewards both customers.

Part of an order (``orders.PlaceOrder`` locks the referrer too and reads the
referral rule), decided in the same transaction as the referee's order.
"""

from __future__ import annotations

from loyalty.ledger.engine.rows import LockedCustomer
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.points import format_points


def complete(tx: BatchTx, referee: LockedCustomer, order_id: str) -> None:
    """A referred customer's first order completes its referral: both are rewarded."""
    if referee.referred_by is None or referee.referral_completed_at is not None:
        return
    referrer = tx.locked(referee.merchant_id, referee.referred_by)
    if referrer is None:
        return  # not locked by this batch (it was referred meanwhile): the next order
    referee.referral_completed_at = tx.now
    referee.touched = referrer.touched = True
    referrer.referred_completed += 1
    completed_before = referrer.referred_completed - 1
    rule = tx.snapshot.earn_rules.get((referee.merchant_id, "referral"))
    rewarded = {"referee": 0, "referrer": 0}
    if rule is not None and rule.active:
        referee_points = rule.referee_points_minor or 0
        if referee.status == "active" and referee_points > 0:
            tx.post(
                referee,
                Posting(
                    points_minor=referee_points,
                    kind="earn",
                    description="Referral reward: welcome",
                    apply_to_lifetime=True,
                    earn_rule_id=rule.id,
                ),
            )
            rewarded["referee"] = referee_points
        limit = rule.max_per_customer
        if (
            referrer.status == "active"
            and rule.points_minor > 0
            and (limit is None or completed_before < limit)
        ):
            tx.post(
                referrer,
                Posting(
                    points_minor=rule.points_minor,
                    kind="earn",
                    description="Referral reward: a friend's first order",
                    apply_to_lifetime=True,
                    earn_rule_id=rule.id,
                ),
            )
            rewarded["referrer"] = rule.points_minor
    tx.event(
        referee,
        "referral.completed",
        referee.customer_id,
        {
            "referee_customer_id": referee.external_id,
            "referrer_customer_id": referrer.external_id,
            "order_id": order_id,
            "referee_points": format_points(rewarded["referee"]),
            "referrer_points": format_points(rewarded["referrer"]),
            "referred_completed": referrer.referred_completed,
        },
    )
