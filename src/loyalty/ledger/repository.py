"""Ledger reads. Writes are the batching writer's (``store_postgres``, ``store_sqlite``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import ledger_entries


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
