"""Ledger reads. Writes are the batching writer's (``store_postgres``, ``store_sqlite``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customers, ledger_entries, pending_credits


async def list_entries(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    before_sequence: int | None,
    limit: int,
) -> list[Any]:
    statement = select(ledger_entries).where(
        ledger_entries.c.merchant_id == merchant_id,
        ledger_entries.c.customer_id == customer_id,
    )
    if before_sequence is not None:
        statement = statement.where(ledger_entries.c.sequence < before_sequence)
    statement = statement.order_by(ledger_entries.c.sequence.desc()).limit(limit)
    return list(await connection.execute(statement))


async def list_pending(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    status: str | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> list[Any]:
    """A customer's pending credits, newest first (ids are time-ordered UUIDv7)."""
    statement = select(pending_credits).where(
        pending_credits.c.merchant_id == merchant_id,
        pending_credits.c.customer_id == customer_id,
    )
    if status is not None:
        statement = statement.where(pending_credits.c.status == status)
    if before_id is not None:
        statement = statement.where(pending_credits.c.id < before_id)
    statement = statement.order_by(pending_credits.c.id.desc()).limit(limit)
    return list(await connection.execute(statement))


async def pending_owner(
    connection: AsyncConnection, merchant_id: uuid.UUID, pending_id: uuid.UUID
) -> str | None:
    """The platform id of the customer a pending credit belongs to."""
    statement = (
        select(customers.c.external_id)
        .join(
            pending_credits,
            (pending_credits.c.merchant_id == customers.c.merchant_id)
            & (pending_credits.c.customer_id == customers.c.id),
        )
        .where(pending_credits.c.merchant_id == merchant_id, pending_credits.c.id == pending_id)
    )
    found: str | None = (await connection.execute(statement)).scalar_one_or_none()
    return found
