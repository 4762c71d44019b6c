"""A manual credit or debit (seed 000's points adjustment)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting, check_precision
from loyalty.ledger.schemas import TransactionEnvelope


@dataclasses.dataclass(frozen=True, slots=True)
class Adjust:
    customer: CustomerRef
    points_minor: int
    kind: str = "adjustment"
    description: str | None = None  # cleaned; None means the programme's default text
    internal_note: str | None = None
    visible_to_customer: bool = True
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None
    earn_rule_id: uuid.UUID | None = None

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        return None  # the customer's balance (and lots) are all a posting needs

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        check_precision(self.points_minor, locked.points_decimals)
        transaction = tx.post(locked, self.posting(locked.default_description))
        return Result(201, TransactionEnvelope(data=transaction))

    def posting(self, default_description: str) -> Posting:
        return Posting(
            points_minor=self.points_minor,
            kind=self.kind,
            description=self.description or default_description,
            internal_note=self.internal_note,
            visible_to_customer=self.visible_to_customer,
            apply_to_lifetime=self.apply_to_lifetime,
            expires_at=self.expires_at,
            earn_rule_id=self.earn_rule_id,
        )
