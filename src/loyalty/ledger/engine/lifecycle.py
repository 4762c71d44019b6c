"""Points over time, as the engine applies them to every posting: expiring lots,
rolling tier windows, tier recomputation. Pure functions on locked rows.

- **Lots.** A credit that will expire (the ``fixed`` policy, or an explicit
  ``expires_at``) opens a lot; every debit spends lots earliest-expiry first
  (FIFO), so the points a customer spends are the ones that would expire
  soonest. Points without a lot never expire. Policy changes apply to credits
  from then on: enabling expiry is never retroactive.
- **Tiers**: recomputed for every customer a batch touches, from the
  programme's basis; upgrades at once, downgrades after the current tier's
  retention. ``tier_recheck_at`` says when time alone may change the tier
  (a retention ending, points leaving a rolling window).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from loyalty.ledger.engine.rows import LockedCustomer, LotRow, TierRow, WindowRow

EXPIRED_DESCRIPTION = "Points expired"


def add_to_window(
    window: WindowRow | None,
    locked: LockedCustomer,
    basis: str,
    amount_minor: int,
    at: datetime,
    now: datetime,
) -> None:
    """Count an amount of this batch in the customer's rolling window, if it falls inside."""
    if window is None or locked.tier_basis != basis or locked.tier_window_days is None:
        return
    if at <= now - timedelta(days=locked.tier_window_days) or amount_minor == 0:
        return
    window.total_minor += amount_minor
    window.oldest_at = at if window.oldest_at is None else min(window.oldest_at, at)


def credit_expiry(
    locked: LockedCustomer, explicit: datetime | None, now: datetime
) -> datetime | None:
    """When a credit made now expires: its own date, else the fixed policy's."""
    if explicit is not None:
        return explicit
    if locked.expiry_policy == "fixed" and locked.expiry_days is not None:
        return now + timedelta(days=locked.expiry_days)
    return None


def spend_lots(lots: list[LotRow], locked: LockedCustomer, points_minor: int) -> None:
    """Take ``points_minor`` from the earliest-expiring lots (what is left never expires)."""
    left = points_minor
    for lot in sorted(lots, key=lambda lot: (lot.expires_at, lot.id)):
        if left == 0:
            break
        taken = min(lot.remaining_minor, left)
        lot.remaining_minor -= taken
        locked.expiring_lots_minor -= taken
        left -= taken


def due_expiry(lots: list[LotRow], locked: LockedCustomer, now: datetime) -> int:
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
    return sum(lot.remaining_minor for lot in lots if lot.expires_at <= now)


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


@dataclasses.dataclass(slots=True)
class LotChanges:
    new: list[LotRow] = dataclasses.field(default_factory=list)
    changed: list[LotRow] = dataclasses.field(default_factory=list)
    closed: list[LotRow] = dataclasses.field(default_factory=list)


def settle_lots(lots: list[LotRow], locked: LockedCustomer, changes: LotChanges) -> list[LotRow]:
    """Turn the customer's lots into writes, refresh the next expiry; the live lots."""
    live: list[LotRow] = []
    for lot in lots:
        if lot.stored_remaining_minor == 0:
            if lot.remaining_minor > 0:
                changes.new.append(lot)
        elif lot.remaining_minor == 0:
            changes.closed.append(lot)
        elif lot.remaining_minor != lot.stored_remaining_minor:
            changes.changed.append(lot)
        if lot.remaining_minor > 0:
            live.append(lot)
        lot.stored_remaining_minor = lot.remaining_minor
    if live:
        next_at = min(lot.expires_at for lot in live)
        locked.next_expiry_at = next_at
        locked.next_expiry_minor = sum(
            lot.remaining_minor for lot in live if lot.expires_at == next_at
        )
    else:
        locked.next_expiry_at = None
        locked.next_expiry_minor = 0
    return live


@dataclasses.dataclass(frozen=True, slots=True)
class TierChange:
    previous: TierRow | None
    current: TierRow | None
    basis_minor: int


def basis_value(locked: LockedCustomer, window: WindowRow | None) -> int:
    if window is not None:
        return window.total_minor
    if locked.tier_basis == "amount_spent":
        return locked.total_spent_minor
    return locked.lifetime_points_minor


def recompute_tier(
    locked: LockedCustomer, tiers: list[TierRow], window: WindowRow | None, now: datetime
) -> TierChange | None:
    """Move the customer to the tier its basis supports (after retention, if lower)."""
    if locked.tier_basis is None:
        locked.tier_recheck_at = None
        return None
    value = basis_value(locked, window)
    by_id = {tier.id: tier for tier in tiers}
    qualified: TierRow | None = None
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


def tier_ref(tier: TierRow | None) -> dict[str, Any] | None:
    return None if tier is None else {"id": tier.id, "name": tier.name}
