"""``BatchTx``: the primitives every operation decides with.

One per batch, holding the locked customers, the rows read for the batch
(``Snapshot``) and the changes so far (``Changes``). An operation reads only
through it and changes rows only through it: ``post`` a ledger entry, ``hold``
a pending credit, ``release``/``cancel`` one, record an ``event``. A refused
operation raises a ``LoyaltyError`` before it changes anything: it
checks everything that can refuse it before its first change (a transfer checks
both sides before it posts either).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from loyalty.actors import SYSTEM
from loyalty.customers.refs import CustomerRef, customer_not_found
from loyalty.errors import ValidationFailedError, invariant
from loyalty.ledger.engine import lifecycle
from loyalty.ledger.engine.changes import PENDING_METRIC, Changes
from loyalty.ledger.engine.errors import BalanceLimitExceededError, InsufficientPointsError
from loyalty.ledger.engine.rows import (
    CustomerRewardRow,
    EntryRow,
    EventRow,
    LockedCustomer,
    LotRow,
    PendingRow,
    WindowRow,
)
from loyalty.ledger.engine.tables import Snapshot
from loyalty.ledger.engine.views import pending_view
from loyalty.ledger.schemas import Transaction
from loyalty.points import BALANCE_MINOR_MAX, MINOR_PER_POINT, format_points

_encoder = msgspec.json.Encoder()


@dataclasses.dataclass(frozen=True, slots=True)
class Posting:
    """One ledger entry to post for a customer."""

    points_minor: int
    kind: str
    description: str
    internal_note: str | None = None
    visible_to_customer: bool = True
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None
    earn_rule_id: uuid.UUID | None = None


def check_precision(points_minor: int, decimals: int, field: str = "points") -> None:
    """Points must fit the programme's precision (0 to 2 decimals)."""
    if points_minor % (MINOR_PER_POINT // 10**decimals) == 0:
        return
    message = (
        "must be a whole number (this programme has no decimals)"
        if decimals == 0
        else f"may have at most {decimals} decimal places"
    )
    raise ValidationFailedError.for_field(field, message)


class BatchTx:
    """The batch's state and its shared primitives."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        now: datetime,
        new_id: Callable[[], uuid.UUID],
        draw_code: Callable[[str], str],
    ) -> None:
        self.snapshot = snapshot
        self.now = now
        self.new_id = new_id
        self.draw_code = draw_code
        self.changes = Changes()
        # The actor of the movement being decided (the planner sets it for each).
        self.actor = SYSTEM
        # Discount codes drawn by this batch, per merchant (never handed out twice).
        self.codes_drawn: set[tuple[uuid.UUID, str]] = set()

    # Customers ------------------------------------------------------------------

    def customer(self, merchant_id: uuid.UUID, ref: CustomerRef) -> LockedCustomer:
        """The locked customer named by ``ref``; 404 ``customer_not_found`` if none."""
        locked = self.snapshot.customer(merchant_id, ref)
        if locked is None:
            raise customer_not_found(ref)
        return locked

    def locked(self, merchant_id: uuid.UUID, customer_id: uuid.UUID) -> LockedCustomer | None:
        """A customer by its UUID, if this batch holds its lock."""
        return self.snapshot.by_id.get((merchant_id, customer_id))

    # Events ---------------------------------------------------------------------

    def event(
        self, customer: LockedCustomer, event_type: str, subject_id: uuid.UUID, payload: Any
    ) -> None:
        """Record an event about ``customer`` in the batch's transaction (``payload``:
        JSON-encodable, the event's ``data``)."""
        self.changes.events.append(
            EventRow(
                merchant_id=customer.merchant_id,
                id=self.new_id(),
                type=event_type,
                subject_id=subject_id,
                payload=_encoder.encode(payload).decode(),
                customer_ref=customer.external_id,
                actor=self.actor,
                created_at=self.now,
            )
        )

    # Postings -------------------------------------------------------------------

    def post(
        self, locked: LockedCustomer, posting: Posting, *, reward: bool = False
    ) -> Transaction:
        """Post one entry: balances, lots, activity, tier window, the entry and its event."""
        points_minor = posting.points_minor
        invariant(points_minor != 0, "a posting moves points")
        balance_before = locked.points_balance_minor
        balance_after = balance_before + points_minor
        _check_balance(
            balance_after, reward=reward, points_minor=points_minor, before=balance_before
        )
        lifetime_delta = 0
        if posting.apply_to_lifetime:
            # Removing earned points lowers lifetime, but never below zero.
            lifetime_delta = max(points_minor, -locked.lifetime_points_minor)
        now = self.now
        entry_id = self.new_id()
        locked.points_balance_minor = balance_after
        locked.lifetime_points_minor += lifetime_delta
        if posting.kind in ("redeem", "revert"):
            # Spent is net of refunded redemptions.
            locked.points_spent_minor -= points_minor
        if posting.kind == "expire":
            locked.points_expired_minor -= points_minor
        if points_minor > 0:
            expires_at = lifecycle.credit_expiry(locked, posting.expires_at, now)
            if expires_at is not None:
                self.lots(locked).append(
                    LotRow(
                        merchant_id=locked.merchant_id,
                        id=entry_id,
                        customer_id=locked.customer_id,
                        remaining_minor=points_minor,
                        expires_at=expires_at,
                        created_at=now,
                    )
                )
                locked.expiring_lots_minor += points_minor
        elif locked.expiring_lots_minor > 0:
            lifecycle.spend_lots(self.lots(locked), locked, -points_minor)
        if points_minor > 0 or posting.kind == "redeem":
            locked.last_activity_at = now
        lifecycle.add_to_window(
            self.window(locked), locked, "lifetime_points", lifetime_delta, now, now
        )
        locked.last_sequence += 1
        locked.touched = True
        self.changes.entries.append(
            EntryRow(
                merchant_id=locked.merchant_id,
                id=entry_id,
                customer_id=locked.customer_id,
                sequence=locked.last_sequence,
                points_minor=points_minor,
                kind=posting.kind,
                description=posting.description,
                internal_note=posting.internal_note,
                visible_to_customer=posting.visible_to_customer,
                apply_to_lifetime=posting.apply_to_lifetime,
                lifetime_delta_minor=lifetime_delta,
                balance_after_minor=balance_after,
                expires_at=posting.expires_at,
                earn_rule_id=posting.earn_rule_id,
                actor=self.actor,
                created_at=now,
            )
        )
        self.changes.count(locked.merchant_id, "entry:" + posting.kind, points_minor)
        transaction = Transaction(
            transaction_id=entry_id,
            customer_id=locked.customer_id,
            points=format_points(points_minor),
            type="credit" if points_minor > 0 else "debit",
            kind=posting.kind,
            description=posting.description,
            internal_note=posting.internal_note,
            visible_to_customer=posting.visible_to_customer,
            apply_to_lifetime=posting.apply_to_lifetime,
            points_balance=format_points(balance_after),
            sequence=locked.last_sequence,
            expires_at=posting.expires_at,
            earn_rule_id=posting.earn_rule_id,
            created_at=now,
            actor=self.actor,
        )
        self.event(
            locked,
            "transaction.created",
            locked.customer_id,
            {
                "transaction": transaction,
                "lifetime_points": format_points(locked.lifetime_points_minor),
            },
        )
        return transaction

    def lots(self, locked: LockedCustomer) -> list[LotRow]:
        lots = self.snapshot.lots.get(locked.key)
        invariant(lots is not None, "a customer's lots are read with it")
        assert lots is not None
        return lots

    def window(self, locked: LockedCustomer) -> WindowRow | None:
        if locked.tier_window_days is None or locked.tier_basis is None:
            return None
        return self.snapshot.windows.get(locked.key)

    # Pending credits --------------------------------------------------------------

    def hold(self, locked: LockedCustomer, posting: Posting, available_at: datetime) -> PendingRow:
        """Hold a credit as pending until ``available_at``."""
        invariant(posting.points_minor > 0, "only credits are held")
        pending_after = locked.pending_points_minor + posting.points_minor
        if locked.points_balance_minor + pending_after > BALANCE_MINOR_MAX:
            raise _balance_limit()
        row = PendingRow(
            merchant_id=locked.merchant_id,
            id=self.new_id(),
            customer_id=locked.customer_id,
            points_minor=posting.points_minor,
            points_cancelled_minor=0,
            kind=posting.kind,
            description=posting.description,
            internal_note=posting.internal_note,
            visible_to_customer=posting.visible_to_customer,
            apply_to_lifetime=posting.apply_to_lifetime,
            expires_at=posting.expires_at,
            status="pending",
            available_at=available_at,
            transaction_id=None,
            earn_rule_id=posting.earn_rule_id,
            released_at=None,
            cancelled_at=None,
            created_at=self.now,
        )
        self.changes.pending.insert(row)
        self.snapshot.pending.found((row.merchant_id, row.id), row)
        self.changes.count(locked.merchant_id, PENDING_METRIC, posting.points_minor)
        locked.pending_points_minor = pending_after
        # Earning, even on hold, is activity (inactivity expiry restarts).
        locked.last_activity_at = self.now
        locked.touched = True
        self.event(locked, "pending_points.created", row.id, pending_payload(row))
        return row

    def customer_pending(self, locked: LockedCustomer) -> list[PendingRow]:
        """The customer's pending credits, oldest first (its pending must be prefetched)."""
        self.snapshot.pending_of.get(locked.key)  # raises unless prefetched
        rows = [
            row
            for row in self.snapshot.pending.values()
            if row.merchant_id == locked.merchant_id
            and row.customer_id == locked.customer_id
            and row.status == "pending"
        ]
        return sorted(rows, key=lambda row: (row.available_at, row.id))

    def release(self, locked: LockedCustomer, row: PendingRow) -> PendingRow:
        """Post a pending credit to the ledger."""
        transaction = self.post(
            locked,
            Posting(
                points_minor=row.remaining_minor,
                kind=row.kind,
                description=row.description,
                internal_note=row.internal_note,
                visible_to_customer=row.visible_to_customer,
                apply_to_lifetime=row.apply_to_lifetime,
                expires_at=row.expires_at,
                earn_rule_id=row.earn_rule_id,
            ),
        )
        self.finish_pending(locked, row, "released", transaction.transaction_id)
        return row

    def finish_pending(
        self,
        locked: LockedCustomer,
        row: PendingRow,
        status: str,
        transaction_id: uuid.UUID | None,
    ) -> None:
        """A pending credit released (into ``transaction_id``) or cancelled."""
        self.changes.count(locked.merchant_id, PENDING_METRIC, -row.remaining_minor)
        locked.pending_points_minor -= row.remaining_minor
        row.status = status
        row.transaction_id = transaction_id
        if status == "released":
            row.released_at = self.now
        else:
            row.cancelled_at = self.now
            row.points_cancelled_minor = row.points_minor  # nothing of it is left
        invariant(locked.pending_points_minor >= 0, "pending points never go negative")
        locked.touched = True
        self.changes.pending.update(row)
        self.event(locked, f"pending_points.{status}", row.id, pending_payload(row))

    def shrink_hold(self, locked: LockedCustomer, row: PendingRow, points_minor: int) -> None:
        """Take ``points_minor`` off a pending credit (all that is left cancels it)."""
        if points_minor >= row.remaining_minor:
            self.finish_pending(locked, row, "cancelled", None)
            return
        row.points_cancelled_minor += points_minor
        self.changes.count(locked.merchant_id, PENDING_METRIC, -points_minor)
        locked.pending_points_minor -= points_minor
        locked.touched = True
        self.changes.pending.update(row)
        self.event(locked, "pending_points.reduced", row.id, pending_payload(row))

    # Customer rewards --------------------------------------------------------------

    def customer_rewards_of(self, locked: LockedCustomer) -> list[CustomerRewardRow]:
        """The customer's live (active or inactive) rewards, oldest first (its rewards
        must be prefetched with ``rewards_of``; those this batch issued are among them)."""
        self.snapshot.rewards_of.get(locked.key)  # raises unless prefetched
        rows = [
            row
            for row in self.snapshot.customer_rewards.values()
            if row.merchant_id == locked.merchant_id
            and row.customer_id == locked.customer_id
            and row.status in LIVE_REWARD_STATUSES
        ]
        return sorted(rows, key=lambda row: (row.created_at, row.id))

    # Discount codes ----------------------------------------------------------------

    def new_code(self, merchant_id: uuid.UUID, prefix: str) -> str:
        """A discount code no other customer reward of this batch holds."""
        for _ in range(CODE_DRAWS_MAX):
            code = self.draw_code(prefix)
            if (merchant_id, code) not in self.codes_drawn:
                self.codes_drawn.add((merchant_id, code))
                return code
        raise AssertionError(f"no fresh discount code in {CODE_DRAWS_MAX} draws")

    # The end of the batch ------------------------------------------------------------

    def settle(self) -> Changes:
        """After the last movement: each touched customer's lots, tier and balance row."""
        for locked in self.snapshot.customers:
            if not locked.touched:
                continue
            self._settle_lots(locked)
            self._settle_tier(locked)
            self.changes.balances.append(locked)
            if locked.customer_changed:
                self.changes.customers.append(locked)
        return self.changes

    def _settle_lots(self, locked: LockedCustomer) -> None:
        lots = self.snapshot.lots.peek(locked.key)
        if not lots:
            return  # no lot, before or after the batch
        changes = lifecycle.LotChanges(
            self.changes.lots_new, self.changes.lots_changed, self.changes.lots_closed
        )
        lots[:] = lifecycle.settle_lots(lots, locked, changes)

    def _settle_tier(self, locked: LockedCustomer) -> None:
        if locked.tier_basis is None:
            locked.tier_recheck_at = None
            return
        tiers = self.snapshot.tiers.get(locked.merchant_id) or []
        change = lifecycle.recompute_tier(locked, tiers, self.window(locked), self.now)
        if change is None:
            return
        upgrade = change.previous is None or (
            change.current is not None
            and change.current.threshold_minor > change.previous.threshold_minor
        )
        self.event(
            locked,
            "customer.tier_changed",
            locked.customer_id,
            {
                "customer_id": locked.external_id,
                "previous_tier": lifecycle.tier_ref(change.previous),
                "tier": lifecycle.tier_ref(change.current),
                "direction": "upgrade" if upgrade else "downgrade",
                "basis": locked.tier_basis,
                "basis_value": format_points(change.basis_minor),
            },
        )


CODE_DRAWS_MAX = 8
# Customer rewards a batch may still change (the stores write no other).
LIVE_REWARD_STATUSES = ("active", "inactive")


def pending_payload(row: PendingRow) -> dict[str, Any]:
    return {"pending_credit": pending_view(row)}


def _balance_limit() -> BalanceLimitExceededError:
    return BalanceLimitExceededError(
        "This credit would take the balance past the largest balance allowed.",
        {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
    )


def _check_balance(balance_after: int, *, reward: bool, points_minor: int, before: int) -> None:
    if balance_after < 0:
        raise InsufficientPointsError(
            "The customer does not have enough points for this reward."
            if reward
            else "The customer does not have enough points for this debit.",
            {
                "points_balance": format_points(before),
                "points_requested": format_points(-points_minor),
            },
        )
    if balance_after > BALANCE_MINOR_MAX:
        raise _balance_limit()
