"""The vendor adapters' reads that no native domain already offers (SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_rewards, ledger_entries, point_lots, rewards


async def list_catalogue(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    """Every reward not deleted (active or not), by number, unbounded."""
    statement = (
        select(rewards)
        .where(rewards.c.merchant_id == merchant_id, rewards.c.deleted_at.is_(None))
        .order_by(rewards.c.number)
    )
    return list(await connection.execute(statement))


async def reward_id_by_number(
    connection: AsyncConnection, merchant_id: uuid.UUID, number: int
) -> uuid.UUID | None:
    """The id of the reward with this number (deleted ones included)."""
    statement = select(rewards.c.id).where(
        rewards.c.merchant_id == merchant_id, rewards.c.number == number
    )
    found: uuid.UUID | None = (await connection.execute(statement)).scalar_one_or_none()
    return found


async def list_customer_rewards(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID, *, limit: int
) -> list[Any]:
    """A customer's rewards, newest first."""
    statement = (
        select(customer_rewards)
        .where(
            customer_rewards.c.merchant_id == merchant_id,
            customer_rewards.c.customer_id == customer_id,
        )
        .order_by(customer_rewards.c.created_at.desc())
        .limit(limit)
    )
    return list(await connection.execute(statement))


async def list_lots(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> list[Any]:
    """A customer's point lots (``remaining_minor``, ``expires_at``), soonest expiry first."""
    statement = (
        select(point_lots.c.remaining_minor, point_lots.c.expires_at)
        .where(point_lots.c.merchant_id == merchant_id, point_lots.c.customer_id == customer_id)
        .order_by(point_lots.c.expires_at)
    )
    return list(await connection.execute(statement))


async def list_visible_entries(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID, *, limit: int
) -> list[Any]:
    """A customer's ledger entries shown to the customer (``id``, ``created_at``,
    ``expires_at``, ``points_minor``), newest first."""
    statement = (
        select(
            ledger_entries.c.id,
            ledger_entries.c.created_at,
            ledger_entries.c.expires_at,
            ledger_entries.c.points_minor,
        )
        .where(
            ledger_entries.c.merchant_id == merchant_id,
            ledger_entries.c.customer_id == customer_id,
            ledger_entries.c.visible_to_customer.is_(True),
        )
        .order_by(ledger_entries.c.sequence.desc())
        .limit(limit)
    )
    return list(await connection.execute(statement))
