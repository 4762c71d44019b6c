"""The queries of an access request: every row held about one customer, by table.

Each walks the customer's own index (its entries by sequence, its rewards,
orders, pending credits and actions by customer) and returns every row: a
customer's data is bounded in practice, and the document is read at once.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import (
    customer_actions,
    customer_rewards,
    ledger_entries,
    order_refunds,
    orders,
    pending_credits,
)


async def snapshot(connection: AsyncConnection) -> None:
    """Make the read transaction one snapshot on Postgres too (SQLite's already is):
    call before its first query."""
    if connection.dialect.name == "postgresql":
        await connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


async def _of_customer(
    connection: AsyncConnection,
    table: Table,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *order_by: Any,
) -> list[Any]:
    """Every row of ``table`` that belongs to the customer, in ``order_by``."""
    statement = (
        select(table)
        .where(table.c.merchant_id == merchant_id, table.c.customer_id == customer_id)
        .order_by(*order_by)
    )
    return list(await connection.execute(statement))


async def entries(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The customer's ledger entries, newest first."""
    return await _of_customer(
        connection, ledger_entries, merchant_id, customer_id, ledger_entries.c.sequence.desc()
    )


async def pending(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The customer's pending credits, whatever their status, newest first."""
    return await _of_customer(
        connection, pending_credits, merchant_id, customer_id, pending_credits.c.id.desc()
    )


async def rewards(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The customer's rewards, whatever their status, newest first."""
    return await _of_customer(
        connection,
        customer_rewards,
        merchant_id,
        customer_id,
        customer_rewards.c.created_at.desc(),
        customer_rewards.c.id.desc(),
    )


async def customer_orders(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The customer's orders, newest first."""
    return await _of_customer(
        connection, orders, merchant_id, customer_id, orders.c.placed_at.desc(), orders.c.id.desc()
    )


async def refunds(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The refunds of the customer's orders, newest first."""
    statement = (
        select(order_refunds)
        .join(
            orders,
            (orders.c.merchant_id == order_refunds.c.merchant_id)
            & (orders.c.id == order_refunds.c.order_row_id),
        )
        .where(orders.c.merchant_id == merchant_id, orders.c.customer_id == customer_id)
        .order_by(order_refunds.c.created_at.desc(), order_refunds.c.id.desc())
    )
    return list(await connection.execute(statement))


async def actions(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """The customer's rewarded actions, newest first."""
    return await _of_customer(
        connection,
        customer_actions,
        merchant_id,
        customer_id,
        customer_actions.c.created_at.desc(),
        customer_actions.c.id.desc(),
    )
