"""The scheduler's operation on one customer: expire what is due (lots, or the whole
balance after inactivity), release holds that are due, recheck the tier.

Decided under the customer's lock, so several workers never do it twice: the
second finds nothing left to do.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine import lifecycle
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.points import format_points


@dataclasses.dataclass(frozen=True, slots=True)
class Maintain:
    customer: CustomerRef

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        locked = snapshot.customer(merchant_id, self.customer)
        if locked is not None:
            want.pending_of.add(locked.key)

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        locked.touched = True  # the tier is rechecked even when nothing moves
        expired = lifecycle.due_expiry(tx.lots(locked), locked, tx.now)
        if expired:
            tx.post(
                locked,
                Posting(
                    points_minor=-expired,
                    kind="expire",
                    description=lifecycle.EXPIRED_DESCRIPTION,
                ),
            )
        due = [row for row in tx.customer_pending(locked) if row.available_at <= tx.now]
        for row in due:
            tx.release(locked, row)
        return Result(
            200, {"data": {"points_expired": format_points(expired), "pending_released": len(due)}}
        )
