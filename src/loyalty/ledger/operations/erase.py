"""Erasing a customer (a GDPR erasure request) as one ledger movement.

Decided under the customer's balance lock like any movement, so it is ordered
with every other movement of the customer: those before it are written off
with the rest of the balance, those after it find no customer (404). In one
transaction:

- the customer stops answering to its platform id and email, in this batch
  and after it;
- its live rewards (active or inactive) are deleted, its pending credits
  cancelled;
- a remaining balance is written off by an ``erase`` debit (not lifetime);
- its profile and identity are removed and its status becomes ``erased``, and
  its past events are blanked (``ErasureRow``, written by the store);
- a ``customer.erased`` event carries the customer as it is left: no personal
  data, named by its UUID only.

Ledger entries, orders, refunds and action rewards stay: they are the books.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import msgspec

from loyalty.customers.refs import ERASED, CustomerRef
from loyalty.customers.schemas import Customer, TierRef
from loyalty.ledger.engine.changes import MEMBERS_METRIC
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import ErasureRow, LockedCustomer
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.ledger.operations.redemptions import event_payload as reward_payload
from loyalty.points import format_points
from loyalty.rewards.customer_rewards import to_detail

ERASE_DESCRIPTION = "Points removed: customer data erased"


@dataclasses.dataclass(frozen=True, slots=True)
class Erase:
    customer: CustomerRef

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        locked = snapshot.customer(merchant_id, self.customer)
        if locked is not None:
            want.pending_of.add(locked.key)
            want.rewards_of.add(locked.key)

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        now = tx.now
        erasure = ErasureRow(
            merchant_id=merchant_id,
            customer_id=locked.customer_id,
            external_id=locked.external_id,
            email=locked.email,
            updated_at=now,
        )
        # From here on the customer has no platform id: what follows is written without it.
        tx.snapshot.forget_identity(locked)
        locked.status = ERASED
        locked.referred_by = None
        locked.touched = True
        for held in tx.customer_rewards_of(locked):
            held.status, held.updated_at = "deleted", now
            tx.changes.customer_rewards.update(held)
            detail = to_detail(held, None, now)
            tx.event(locked, "customer_reward.deleted", held.id, reward_payload(detail))
        for pending in tx.customer_pending(locked):
            tx.finish_pending(locked, pending, "cancelled", None)
        if locked.points_balance_minor > 0:
            tx.post(
                locked,
                Posting(
                    points_minor=-locked.points_balance_minor,
                    kind="erase",
                    description=ERASE_DESCRIPTION,
                    apply_to_lifetime=False,
                ),
            )
        tx.changes.erasures.append(erasure)
        tx.changes.count(merchant_id, MEMBERS_METRIC, -1)
        tx.event(
            locked, "customer.erased", locked.customer_id, {"customer": erased_view(tx, locked)}
        )
        return Result(204, None)


def erased_view(tx: BatchTx, locked: LockedCustomer) -> Customer:
    """The customer as its erasure leaves it (no personal data, nothing left to expire)."""
    tier = None
    if locked.tier_id is not None:
        for row in tx.snapshot.tiers.get(locked.merchant_id) or []:
            if row.id == locked.tier_id:
                tier = TierRef(id=row.id, name=row.name)
    return Customer(
        id=locked.customer_id,
        customer_id=None,
        email=None,
        first_name=None,
        last_name=None,
        date_of_birth=None,
        status=ERASED,
        status_reason=None,
        points_balance=format_points(locked.points_balance_minor),
        pending_points=format_points(locked.pending_points_minor),
        lifetime_points=format_points(locked.lifetime_points_minor),
        points_spent=format_points(locked.points_spent_minor),
        points_expired=format_points(locked.points_expired_minor),
        store_credit_balance=format_points(locked.store_credit_balance_minor),
        expiring_points=0,
        points_expire_at=None,
        tier=tier,
        tier_expires_at=locked.tier_expires_at,
        next_tier=None,
        amount_to_next_tier=None,
        rewarded_actions=msgspec.json.decode(locked.rewarded_actions),
        referred_completed=locked.referred_completed,
        total_spent=format_points(locked.total_spent_minor),
        created_at=locked.created_at or tx.now,
        updated_at=tx.now,
    )
