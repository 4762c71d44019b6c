from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import program_settings, rewards

# A catalogue is shown whole; this bounds it.
CATALOGUE_REWARDS_MAX = 500


async def next_number(connection: AsyncConnection, merchant_id: uuid.UUID) -> int:
    """The merchant's next reward number (the counter row serialises creators)."""
    number = (
        await connection.execute(
            program_settings.update()
            .where(program_settings.c.merchant_id == merchant_id)
            .values(reward_number_last=program_settings.c.reward_number_last + 1)
            .returning(program_settings.c.reward_number_last)
        )
    ).scalar_one()
    return int(number)


async def insert(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(rewards.insert().values(**values))


async def update(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    reward_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    await connection.execute(
        rewards.update()
        .where(rewards.c.merchant_id == merchant_id, rewards.c.id == reward_id)
        .values(**values)
    )


async def get(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: uuid.UUID, *, lock: bool = False
) -> Any | None:
    statement = select(rewards).where(
        rewards.c.merchant_id == merchant_id, rewards.c.id == reward_id
    )
    if lock:
        statement = statement.with_for_update()
    return (await connection.execute(statement)).one_or_none()


async def list_page(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    after_number: int | None,
    limit: int,
    active_only: bool = False,
) -> list[Any]:
    statement = select(rewards).where(
        rewards.c.merchant_id == merchant_id, rewards.c.deleted_at.is_(None)
    )
    if active_only:
        statement = statement.where(rewards.c.active.is_(True))
    if after_number is not None:
        statement = statement.where(rewards.c.number > after_number)
    return list(await connection.execute(statement.order_by(rewards.c.number).limit(limit)))


async def catalogue(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    """Active, not deleted rewards, cheapest first (the redeemable list)."""
    statement = (
        select(rewards)
        .where(
            rewards.c.merchant_id == merchant_id,
            rewards.c.deleted_at.is_(None),
            rewards.c.active.is_(True),
        )
        .order_by(rewards.c.points_cost_minor, rewards.c.number)
        .limit(CATALOGUE_REWARDS_MAX)
    )
    return list(await connection.execute(statement))
