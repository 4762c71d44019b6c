"""Points moved from one customer to another: one debit and one credit, one batch.

Both customers are locked with the rest of the batch, in the engine's one
lock order, so transfers racing in opposite directions never deadlock. The
debit never overdraws (``insufficient_points``) and the credit never passes
the largest balance: both are checked before either entry is posted, so a
refused transfer moves nothing. Lifetime points move only when asked.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from loyalty.customers.refs import CustomerRef
from loyalty.errors import ValidationFailedError
from loyalty.ledger.engine.errors import BalanceLimitExceededError, InsufficientPointsError
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting, check_precision
from loyalty.ledger.schemas import Transfer, TransferEnvelope
from loyalty.points import BALANCE_MINOR_MAX, format_points

DESCRIPTION_CHARS_MAX = 255


@dataclasses.dataclass(frozen=True, slots=True)
class TransferPoints:
    source: CustomerRef
    target: CustomerRef
    points_minor: int  # > 0
    description: str | None = None  # cleaned; None: "Points transferred to/from ..."
    internal_note: str | None = None
    apply_to_lifetime: bool = False

    def locks(self) -> Sequence[CustomerRef]:
        return (self.source, self.target)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        return None  # two balances (and their lots), locked with the batch

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        source = tx.customer(merchant_id, self.source)
        target = tx.customer(merchant_id, self.target)
        if source is target:
            raise ValidationFailedError.for_field(
                "to_customer_id", "must name another customer than the one debited"
            )
        check_precision(self.points_minor, source.points_decimals)
        if source.points_balance_minor < self.points_minor:
            raise InsufficientPointsError(
                "The customer does not have enough points for this transfer.",
                {
                    "points_balance": format_points(source.points_balance_minor),
                    "points_requested": format_points(self.points_minor),
                },
            )
        if target.points_balance_minor + self.points_minor > BALANCE_MINOR_MAX:
            raise BalanceLimitExceededError(
                "This transfer would take the credited balance past the largest balance allowed.",
                {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
            )
        debit = tx.post(
            source,
            Posting(
                points_minor=-self.points_minor,
                kind="transfer",
                description=self.description
                or f"Points transferred to {target.external_id}"[:DESCRIPTION_CHARS_MAX],
                internal_note=self.internal_note,
                apply_to_lifetime=self.apply_to_lifetime,
            ),
        )
        credit = tx.post(
            target,
            Posting(
                points_minor=self.points_minor,
                kind="transfer",
                description=self.description
                or f"Points transferred from {source.external_id}"[:DESCRIPTION_CHARS_MAX],
                internal_note=self.internal_note,
                apply_to_lifetime=self.apply_to_lifetime,
            ),
        )
        transfer = Transfer(transfer_id=tx.new_id(), from_=debit, to=credit)
        tx.event(
            source,
            "points.transferred",
            transfer.transfer_id,
            {
                "transfer_id": transfer.transfer_id,
                "from_customer_id": source.external_id,
                "to_customer_id": target.external_id,
                "points": format_points(self.points_minor),
                "from_transaction_id": debit.transaction_id,
                "to_transaction_id": credit.transaction_id,
            },
        )
        return Result(201, TransferEnvelope(data=transfer))
