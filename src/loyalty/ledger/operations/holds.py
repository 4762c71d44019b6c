"""Pending credits (TigerBeetle's pending transfers): a credit held until a date,
released early, or cancelled.

A hold counts in ``pending_points`` only; releasing it (when due, or approved
early) posts the ledger credit; cancelling it voids it. Pending points are
never redeemable and never expire.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.errors import ConflictError, NotFoundError
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import LockedCustomer, PendingRow
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, check_precision
from loyalty.ledger.engine.views import pending_view
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.schemas import (
    PendingCreditEnvelope,
    PendingCreditMovement,
    PendingRelease,
    PendingReleaseEnvelope,
)
from loyalty.points import format_points


class PendingCreditNotFoundError(NotFoundError):
    code = "pending_credit_not_found"


class InvalidPendingStateError(ConflictError):
    code = "invalid_pending_state"


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """Credit ``credit``'s points as pending until ``available_at``."""

    credit: Adjust
    available_at: datetime

    def locks(self) -> Sequence[CustomerRef]:
        return (self.credit.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        return None

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.credit.customer)
        check_precision(self.credit.points_minor, locked.points_decimals)
        row = tx.hold(locked, self.credit.posting(locked.default_description), self.available_at)
        return Result(201, pending_reply(row, locked))


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    """Release one pending credit early, or every one of the customer's (``None``)."""

    customer: CustomerRef
    pending_id: uuid.UUID | None = None

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        if self.pending_id is not None:
            want.pending.add((merchant_id, self.pending_id))
            return
        locked = snapshot.customer(merchant_id, self.customer)
        if locked is not None:
            want.pending_of.add(locked.key)

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        if self.pending_id is not None:
            rows = [named_pending(tx, locked, self.pending_id, "release")]
        else:
            rows = tx.customer_pending(locked)
        released = [tx.release(locked, row) for row in rows]
        return Result(
            200,
            PendingReleaseEnvelope(
                data=PendingRelease(
                    released=[pending_view(row) for row in released],
                    points_balance=format_points(locked.points_balance_minor),
                    pending_points=format_points(locked.pending_points_minor),
                )
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Cancel:
    customer: CustomerRef
    pending_id: uuid.UUID

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.pending.add((merchant_id, self.pending_id))

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        row = named_pending(tx, locked, self.pending_id, "cancel")
        tx.finish_pending(locked, row, "cancelled", None)
        return Result(200, pending_reply(row, locked))


def named_pending(
    tx: BatchTx, locked: LockedCustomer, pending_id: uuid.UUID, action: str
) -> PendingRow:
    row = tx.snapshot.pending.get((locked.merchant_id, pending_id))
    if row is None or row.customer_id != locked.customer_id:
        raise PendingCreditNotFoundError(
            f"No pending credit {str(pending_id)!r} for this customer.", {"id": str(pending_id)}
        )
    if row.status != "pending":
        raise InvalidPendingStateError(
            f"A pending credit that is {row.status!r} cannot be {action}led; only pending ones can."
            if action == "cancel"
            else f"A pending credit that is {row.status!r} cannot be released again.",
            {"status": row.status, "action": action},
        )
    return row


def pending_reply(row: PendingRow, locked: LockedCustomer) -> PendingCreditEnvelope:
    return PendingCreditEnvelope(
        data=PendingCreditMovement(
            **msgspec.structs.asdict(pending_view(row)),
            points_balance=format_points(locked.points_balance_minor),
            pending_points=format_points(locked.pending_points_minor),
        )
    )
