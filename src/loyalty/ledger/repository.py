"""Ledger queries. Entries are only ever inserted; balances change only here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_balances, ledger_entries


@dataclass(frozen=True, slots=True)
class LockedBalance:
    points_balance_minor: int
    lifetime_points_minor: int
    last_sequence: int


async def lock_balance(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> LockedBalance:
    """Read a customer's balance row and hold it until commit.

    Postgres takes the row lock (FOR UPDATE); on SQLite the transaction
    already holds the database's write lock (BEGIN IMMEDIATE).
    """
    row = (
        await connection.execute(
            select(
                customer_balances.c.points_balance_minor,
                customer_balances.c.lifetime_points_minor,
                customer_balances.c.last_sequence,
            )
            .where(
                customer_balances.c.merchant_id == merchant_id,
                customer_balances.c.customer_id == customer_id,
            )
            .with_for_update()
        )
    ).one()
    return LockedBalance(row.points_balance_minor, row.lifetime_points_minor, row.last_sequence)


async def apply_to_balance(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    points_minor: int,
    lifetime_delta_minor: int,
    spent_delta_minor: int,
    expired_delta_minor: int,
    expected_sequence: int,
    now: datetime,
) -> int:
    """Apply a movement to the locked balance; returns rows changed (1 or 0).

    The WHERE clause re-checks what the caller decided (sequence unchanged,
    no overdraft) so a logic error can never overdraw or skip an entry.
    """
    balance = customer_balances.c
    result = await connection.execute(
        customer_balances.update()
        .where(
            balance.merchant_id == merchant_id,
            balance.customer_id == customer_id,
            balance.last_sequence == expected_sequence,
            balance.points_balance_minor + points_minor >= 0,
        )
        .values(
            points_balance_minor=balance.points_balance_minor + points_minor,
            lifetime_points_minor=balance.lifetime_points_minor + lifetime_delta_minor,
            points_spent_minor=balance.points_spent_minor + spent_delta_minor,
            points_expired_minor=balance.points_expired_minor + expired_delta_minor,
            last_sequence=balance.last_sequence + 1,
            updated_at=now,
        )
    )
    return int(result.rowcount)


async def insert_entry(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(ledger_entries.insert().values(**values))


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


async def sum_entries(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> tuple[int, int, int]:
    """(sum of points, sum of lifetime deltas, count): the balance recomputed from entries."""
    row = (
        await connection.execute(
            select(
                func.coalesce(func.sum(ledger_entries.c.points_minor), 0),
                func.coalesce(func.sum(ledger_entries.c.lifetime_delta_minor), 0),
                func.count(),
            ).where(
                ledger_entries.c.merchant_id == merchant_id,
                ledger_entries.c.customer_id == customer_id,
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])
