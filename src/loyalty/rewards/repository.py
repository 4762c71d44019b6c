from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_rewards, customers, program_settings, rewards

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


def _with_customer() -> Select[Any]:
    return select(customer_rewards, customers.c.external_id).join(
        customers,
        (customers.c.merchant_id == customer_rewards.c.merchant_id)
        & (customers.c.id == customer_rewards.c.customer_id),
    )


async def get_customer_reward(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_reward_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Any | None:
    """The customer reward with its customer's platform id."""
    statement = _with_customer().where(
        customer_rewards.c.merchant_id == merchant_id, customer_rewards.c.id == customer_reward_id
    )
    if lock:
        statement = statement.with_for_update(of=customer_rewards)
    return (await connection.execute(statement)).one_or_none()


async def update_customer_reward(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_reward_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    await connection.execute(
        customer_rewards.update()
        .where(
            customer_rewards.c.merchant_id == merchant_id,
            customer_rewards.c.id == customer_reward_id,
        )
        .values(**values)
    )


async def customer_rewards_newest_first(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID, limit: int
) -> list[Any]:
    statement = (
        select(customer_rewards)
        .where(
            customer_rewards.c.merchant_id == merchant_id,
            customer_rewards.c.customer_id == customer_id,
        )
        .order_by(customer_rewards.c.created_at.desc(), customer_rewards.c.id.desc())
        .limit(limit)
    )
    return list(await connection.execute(statement))


async def claim_due_for_expiry(connection: AsyncConnection, now: datetime, limit: int) -> list[Any]:
    """Active rewards past their expiry, locked; rows another worker holds are skipped."""
    statement = (
        _with_customer()
        .where(customer_rewards.c.status == "active", customer_rewards.c.expires_at <= now)
        .order_by(customer_rewards.c.expires_at)
        .limit(limit)
        .with_for_update(of=customer_rewards, skip_locked=True)
    )
    return list(await connection.execute(statement))
