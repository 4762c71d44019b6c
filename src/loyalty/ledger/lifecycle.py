"""Points over time: expiring lots, pending credits, VIP tiers.

Pure planning, used by the batch (``batch.py``) under the customers' balance
locks, like the reward operations:

- **Lots.** A credit that will expire (the ``fixed`` policy, or an explicit
  ``expires_at``) opens a lot; every debit spends lots earliest-expiry first
  (FIFO), so the points a customer spends are the ones that would expire
  soonest. Points without a lot never expire. Policy changes apply to credits
  from then on: enabling expiry is never retroactive.
- **Pending credits** (TigerBeetle's pending transfers): a hold counts in
  ``pending_points`` only; releasing it (when due, or approved early) posts
  the ledger credit; cancelling it voids it. Pending points are never
  redeemable and never expire.
- **Tiers**: recomputed for every customer a batch touches, from the
  programme's basis; upgrades at once, downgrades after the current tier's
  retention. ``tier_recheck_at`` says when time alone may change the tier
  (a retention ending, points leaving a rolling window).
- ``Maintain``, the scheduler's operation: expire what is due (lots, or the
  whole balance after inactivity), release holds that are due, recheck the
  tier. Decided under the lock, so several workers never do it twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from loyalty.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from loyalty.ledger.batch import LockedCustomer, Movement

EXPIRED_DESCRIPTION = "Points expired"
CustomerId = tuple[uuid.UUID, uuid.UUID]  # (merchant_id, customer_id)
RowKey = tuple[uuid.UUID, uuid.UUID]  # (merchant_id, id)

PENDING_COLUMNS = (
    "merchant_id", "id", "customer_id", "points_minor", "kind", "description", "internal_note",
    "visible_to_customer", "apply_to_lifetime", "expires_at", "status", "available_at",
    "transaction_id", "earn_rule_id", "released_at", "cancelled_at", "created_at",
)  # fmt: skip
LOT_COLUMNS = ("merchant_id", "id", "customer_id", "remaining_minor", "expires_at", "created_at")


class PendingCreditNotFoundError(NotFoundError):
    code = "pending_credit_not_found"


class InvalidPendingStateError(ConflictError):
    code = "invalid_pending_state"


@dataclass(frozen=True, slots=True)
class Hold:
    """Credit the movement's points as pending until ``available_at``."""

    available_at: datetime


@dataclass(frozen=True, slots=True)
class Release:
    """Release one pending credit early, or every one of the customer's (``None``)."""

    pending_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    pending_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Maintain:
    """The scheduler's: expire what is due, release due holds, recheck the tier."""


LifecycleOperation = Hold | Release | Cancel | Maintain


@dataclass(slots=True)
class Lot:
    id: uuid.UUID
    remaining_minor: int
    expires_at: datetime
    created_at: datetime
    stored_remaining_minor: int = 0  # 0: not in the database yet


@dataclass(frozen=True, slots=True)
class Tier:
    id: uuid.UUID
    name: str
    threshold_minor: int
    retention_days: int | None
    multiplier_hundredths: int = 100


@dataclass(slots=True)
class Window:
    """A customer's basis inside the programme's rolling window."""

    total_minor: int = 0
    # The oldest movement still inside the window: it leaves at oldest + window.
    oldest_at: datetime | None = None


@dataclass(slots=True)
class LifecycleContext:
    """What the batch reads under the locks for lots, holds and tiers."""

    lots: dict[CustomerId, list[Lot]] = field(default_factory=dict)
    # Pending credits by (merchant_id, id), as column values; changed in place.
    pending: dict[RowKey, dict[str, Any]] = field(default_factory=dict)
    tiers: dict[uuid.UUID, list[Tier]] = field(default_factory=dict)
    windows: dict[CustomerId, Window] = field(default_factory=dict)

    def customer_lots(self, locked: LockedCustomer) -> list[Lot]:
        return self.lots.setdefault((locked.merchant_id, locked.customer_id), [])

    def customer_pending(self, locked: LockedCustomer) -> list[dict[str, Any]]:
        """The customer's pending credits, oldest first."""
        rows = [
            row
            for (merchant_id, _), row in self.pending.items()
            if merchant_id == locked.merchant_id
            and row["customer_id"] == locked.customer_id
            and row["status"] == "pending"
        ]
        return sorted(rows, key=lambda row: (row["available_at"], row["id"]))


@dataclass(slots=True)
class LifecycleWrites:
    lot_inserts: list[dict[str, Any]] = field(default_factory=list)
    lot_updates: list[tuple[uuid.UUID, uuid.UUID, int]] = field(default_factory=list)
    lot_deletes: list[RowKey] = field(default_factory=list)
    pending_inserts: list[dict[str, Any]] = field(default_factory=list)
    # (merchant_id, id, status, transaction_id, at)
    pending_updates: list[tuple[uuid.UUID, uuid.UUID, str, uuid.UUID | None, datetime]] = field(
        default_factory=list
    )
    # (merchant_id, id, points left) of holds partly taken back (refunds).
    pending_shrinks: list[tuple[uuid.UUID, uuid.UUID, int]] = field(default_factory=list)
    # Holds made by this batch (inserted in their final state).
    new_pending: set[uuid.UUID] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.lot_inserts
            or self.lot_updates
            or self.lot_deletes
            or self.pending_inserts
            or self.pending_updates
            or self.pending_shrinks
        )


# What the stores must read -------------------------------------------------


def lot_owners(customers: list[LockedCustomer]) -> list[CustomerId]:
    return sorted({(c.merchant_id, c.customer_id) for c in customers if c.expiring_lots_minor > 0})


def pending_ids(movements: list[Movement], also: list[RowKey] | None = None) -> list[RowKey]:
    """Pending credits named by id (and ``also``, e.g. holds of refunded orders)."""
    return sorted(
        {
            (m.merchant_id, m.lifecycle.pending_id)
            for m in movements
            if isinstance(m.lifecycle, Release | Cancel) and m.lifecycle.pending_id is not None
        }
        | set(also or [])
    )


def pending_owners(movements: list[Movement], customers: list[LockedCustomer]) -> list[CustomerId]:
    """Customers whose every pending credit the batch may release."""
    wanted = {
        m.customer_key
        for m in movements
        if isinstance(m.lifecycle, Maintain)
        or (isinstance(m.lifecycle, Release) and m.lifecycle.pending_id is None)
    }
    return sorted(
        {
            (c.merchant_id, c.customer_id)
            for c in customers
            if c.pending_points_minor > 0
            and (
                (c.merchant_id, "id", c.external_id) in wanted
                or (c.merchant_id, "email", c.email) in wanted
            )
        }
    )


def tier_merchants(customers: list[LockedCustomer]) -> list[uuid.UUID]:
    return sorted({c.merchant_id for c in customers if c.tier_basis is not None})


def window_owners(
    customers: list[LockedCustomer], basis: str
) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """(merchant, customer, window days) of customers of programmes with a rolling
    window on ``basis`` (lifetime points: the ledger; amount spent: the orders)."""
    return sorted(
        {
            (c.merchant_id, c.customer_id, c.tier_window_days)
            for c in customers
            if c.tier_basis == basis and c.tier_window_days is not None
        }
    )


def add_to_window(
    context: LifecycleContext,
    locked: LockedCustomer,
    basis: str,
    amount_minor: int,
    at: datetime,
    now: datetime,
) -> None:
    """Count an amount of this batch in the customer's rolling window, if it falls inside."""
    window = context.windows.get((locked.merchant_id, locked.customer_id))
    if window is None or locked.tier_basis != basis or locked.tier_window_days is None:
        return
    if at <= now - timedelta(days=locked.tier_window_days) or amount_minor == 0:
        return
    window.total_minor += amount_minor
    window.oldest_at = at if window.oldest_at is None else min(window.oldest_at, at)


# Lots -------------------------------------------------------------------------


def credit_expiry(
    locked: LockedCustomer, explicit: datetime | None, now: datetime
) -> datetime | None:
    """When a credit made now expires: its own date, else the fixed policy's."""
    if explicit is not None:
        return explicit
    if locked.expiry_policy == "fixed" and locked.expiry_days is not None:
        return now + timedelta(days=locked.expiry_days)
    return None


def open_lot(
    context: LifecycleContext,
    locked: LockedCustomer,
    entry_id: uuid.UUID,
    points_minor: int,
    expires_at: datetime,
    now: datetime,
) -> None:
    context.customer_lots(locked).append(Lot(entry_id, points_minor, expires_at, now))
    locked.expiring_lots_minor += points_minor


def spend_lots(context: LifecycleContext, locked: LockedCustomer, points_minor: int) -> None:
    """Take ``points_minor`` from the earliest-expiring lots (what is left never expires)."""
    if locked.expiring_lots_minor == 0:
        return
    left = points_minor
    for lot in sorted(context.customer_lots(locked), key=lambda lot: (lot.expires_at, lot.id)):
        if left == 0:
            break
        taken = min(lot.remaining_minor, left)
        lot.remaining_minor -= taken
        locked.expiring_lots_minor -= taken
        left -= taken


def due_expiry(context: LifecycleContext, locked: LockedCustomer, now: datetime) -> int:
    """Points that have expired by ``now`` (minor units, ≥ 0)."""
    if locked.points_balance_minor == 0:
        return 0
    deadline = inactivity_deadline(
        locked.expiry_policy,
        locked.expiry_days,
        locked.expiry_changed_at,
        locked.last_activity_at,
    )
    if deadline is not None and deadline <= now:
        return locked.points_balance_minor
    return sum(
        lot.remaining_minor for lot in context.customer_lots(locked) if lot.expires_at <= now
    )


def inactivity_deadline(
    policy: str,
    days: int | None,
    changed_at: datetime | None,
    last_activity_at: datetime | None,
) -> datetime | None:
    """When the whole balance expires for inactivity (counted from the policy change at the
    earliest, so enabling it is never retroactive)."""
    if policy != "inactivity" or days is None or changed_at is None:
        return None
    start = changed_at if last_activity_at is None else max(changed_at, last_activity_at)
    return start + timedelta(days=days)


def settle_lots(context: LifecycleContext, locked: LockedCustomer, writes: LifecycleWrites) -> None:
    """Turn the customer's lots into writes and refresh the next expiry on the balance."""
    lots = context.lots.get((locked.merchant_id, locked.customer_id))
    if lots is None:
        return
    live: list[Lot] = []
    for lot in lots:
        key = (locked.merchant_id, lot.id)
        if lot.stored_remaining_minor == 0:
            if lot.remaining_minor > 0:
                writes.lot_inserts.append(
                    {
                        "merchant_id": locked.merchant_id,
                        "id": lot.id,
                        "customer_id": locked.customer_id,
                        "remaining_minor": lot.remaining_minor,
                        "expires_at": lot.expires_at,
                        "created_at": lot.created_at,
                    }
                )
        elif lot.remaining_minor == 0:
            writes.lot_deletes.append(key)
        elif lot.remaining_minor != lot.stored_remaining_minor:
            writes.lot_updates.append((key[0], key[1], lot.remaining_minor))
        if lot.remaining_minor > 0:
            live.append(lot)
        lot.stored_remaining_minor = lot.remaining_minor
    context.lots[(locked.merchant_id, locked.customer_id)] = live
    if live:
        next_at = min(lot.expires_at for lot in live)
        locked.next_expiry_at = next_at
        locked.next_expiry_minor = sum(
            lot.remaining_minor for lot in live if lot.expires_at == next_at
        )
    else:
        locked.next_expiry_at = None
        locked.next_expiry_minor = 0


# Tiers ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierChange:
    previous: Tier | None
    current: Tier | None
    basis_minor: int


def basis_value(locked: LockedCustomer, window: Window | None) -> int:
    if window is not None:
        return window.total_minor
    if locked.tier_basis == "amount_spent":
        return locked.total_spent_minor
    return locked.lifetime_points_minor


def recompute_tier(
    locked: LockedCustomer, tiers: list[Tier], window: Window | None, now: datetime
) -> TierChange | None:
    """Move the customer to the tier its basis supports (after retention, if lower)."""
    if locked.tier_basis is None:
        locked.tier_recheck_at = None
        return None
    value = basis_value(locked, window)
    by_id = {tier.id: tier for tier in tiers}
    qualified: Tier | None = None
    for tier in tiers:  # ascending thresholds
        if value >= tier.threshold_minor:
            qualified = tier
    current = by_id.get(locked.tier_id) if locked.tier_id is not None else None
    target = current
    if (
        current is None
        or (qualified is not None and qualified.threshold_minor >= current.threshold_minor)
        or current.retention_days is None
    ):
        target = qualified
        locked.tier_expires_at = None
    elif locked.tier_expires_at is None:
        locked.tier_expires_at = now + timedelta(days=current.retention_days)
    elif locked.tier_expires_at <= now:
        target = qualified
        locked.tier_expires_at = None
    recheck = locked.tier_expires_at
    if window is not None and window.oldest_at is not None and locked.tier_window_days is not None:
        leaves_at = window.oldest_at + timedelta(days=locked.tier_window_days)
        recheck = leaves_at if recheck is None else min(recheck, leaves_at)
    locked.tier_recheck_at = recheck
    target_id = target.id if target is not None else None
    if target_id == locked.tier_id:
        return None
    locked.tier_id = target_id
    return TierChange(current, target, value)


def tier_ref(tier: Tier | None) -> dict[str, Any] | None:
    return None if tier is None else {"id": tier.id, "name": tier.name}
