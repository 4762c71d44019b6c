"""Customer rewards as the API shows them (pure functions, no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from loyalty.points import format_points
from loyalty.rewards.schemas import CustomerReward, CustomerRewardDetail

# Statuses a customer reward can leave, and by which action.
ACTIVE = "active"


def effective_status(status: str, expires_at: datetime | None, now: datetime) -> str:
    """An active code past its expiry is expired, even before the job marks it."""
    if status == ACTIVE and expires_at is not None and expires_at <= now:
        return "expired"
    return status


def to_detail(row: Any, customer_id: str | None, now: datetime) -> CustomerRewardDetail:
    """A customer reward row (attribute access: a database row or the ledger's typed row);
    ``customer_id``: its holder's platform id (None once the holder is erased)."""
    store_credit = row.store_credit_minor
    return CustomerRewardDetail(
        id=row.id,
        customer_id=customer_id,
        reward_id=row.reward_id,
        reward_type=row.reward_type,
        name=row.reward_name,
        reward_rule=msgspec.json.decode(row.reward_rule),
        status=effective_status(row.status, row.expires_at, now),  # type: ignore[arg-type]
        discount_code=row.discount_code,
        points_used=format_points(row.points_used_minor),
        store_credit=None if store_credit is None else format_points(store_credit),
        order_id=row.order_id,
        transaction_id=row.redeem_transaction_id,
        revert_transaction_id=row.revert_transaction_id,
        expires_at=row.expires_at,
        used_at=row.used_at,
        reverted_at=row.reverted_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def to_summary(row: Any, now: datetime) -> CustomerReward:
    """The seed's fields, for the redeemable endpoint (a row with attribute access)."""
    return CustomerReward(
        id=row.id,
        reward_type=row.reward_type,
        status=effective_status(row.status, row.expires_at, now),  # type: ignore[arg-type]
        discount_code=row.discount_code,
        points_used=format_points(row.points_used_minor),
        expires_at=row.expires_at,
        used_at=row.used_at,
        created_at=row.created_at,
    )
