"""The orders domain's queries (the ledger writer records orders and refunds)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_balances, customers, orders, tiers


async def customer_of_order(
    connection: AsyncConnection, merchant_id: uuid.UUID, order_id: str
) -> uuid.UUID | None:
    """The UUID of the customer who placed the order (erased customers included)."""
    customer_id: uuid.UUID | None = (
        await connection.execute(
            select(orders.c.customer_id).where(
                orders.c.merchant_id == merchant_id, orders.c.order_id == order_id
            )
        )
    ).scalar_one_or_none()
    return customer_id


async def buyer(connection: AsyncConnection, merchant_id: uuid.UUID, external_id: str) -> Any:
    """The customer's ``status`` and tier ``multiplier_hundredths`` (None without a
    tier), or None for an unknown customer."""
    return (
        await connection.execute(
            select(customers.c.status, tiers.c.multiplier_hundredths)
            .join(
                customer_balances,
                (customer_balances.c.merchant_id == customers.c.merchant_id)
                & (customer_balances.c.customer_id == customers.c.id),
            )
            .outerjoin(
                tiers,
                (tiers.c.merchant_id == customer_balances.c.merchant_id)
                & (tiers.c.id == customer_balances.c.tier_id),
            )
            .where(
                customers.c.merchant_id == merchant_id,
                customers.c.external_id == external_id,
            )
        )
    ).one_or_none()
