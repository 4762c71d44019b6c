"""Rows as the API shows them (pure functions, attribute access: the batch's typed
rows and the database's rows alike)."""

from __future__ import annotations

from typing import Any

from loyalty.ledger.schemas import PendingCredit
from loyalty.points import format_points


def pending_view(row: Any) -> PendingCredit:
    return PendingCredit(
        id=row.id,
        customer_id=row.customer_id,
        points=format_points(row.points_minor),
        points_cancelled=format_points(row.points_cancelled_minor),
        kind=row.kind,
        description=row.description,
        internal_note=row.internal_note,
        visible_to_customer=bool(row.visible_to_customer),
        apply_to_lifetime=bool(row.apply_to_lifetime),
        expires_at=row.expires_at,
        status=row.status,
        available_at=row.available_at,
        transaction_id=row.transaction_id,
        earn_rule_id=row.earn_rule_id,
        released_at=row.released_at,
        cancelled_at=row.cancelled_at,
        created_at=row.created_at,
    )
