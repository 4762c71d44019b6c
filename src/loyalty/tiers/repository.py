"""Tier reads and writes (configuration: SQLAlchemy Core)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_balances, ledger_entries, orders, program_settings, tiers


async def lock_programme(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    """The programme's settings row, locked: tier changes of a merchant run one at a time."""
    statement = (
        select(program_settings.c.tier_basis, program_settings.c.tier_window_days)
        .where(program_settings.c.merchant_id == merchant_id)
        .with_for_update()
    )
    return (await connection.execute(statement)).one()


async def list_tiers(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    statement = (
        select(tiers).where(tiers.c.merchant_id == merchant_id).order_by(tiers.c.threshold_minor)
    )
    return list(await connection.execute(statement))


async def insert(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(tiers.insert().values(**values))


async def update(
    connection: AsyncConnection, merchant_id: uuid.UUID, tier_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await connection.execute(
        tiers.update()
        .where(tiers.c.merchant_id == merchant_id, tiers.c.id == tier_id)
        .values(**values)
    )


async def set_programme_basis(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    basis: str,
    window_days: int | None,
    now: datetime,
) -> None:
    await connection.execute(
        program_settings.update()
        .where(program_settings.c.merchant_id == merchant_id)
        .values(tier_basis=basis, tier_window_days=window_days, updated_at=now)
    )


async def schedule_recheck(
    connection: AsyncConnection, merchant_id: uuid.UUID, now: datetime
) -> int:
    """Ask the scheduler to recompute every customer's tier (the tiers changed)."""
    result = await connection.execute(
        customer_balances.update()
        .where(customer_balances.c.merchant_id == merchant_id)
        .values(tier_recheck_at=now)
    )
    return int(result.rowcount or 0)


async def window_total(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    since: datetime,
) -> int:
    """Lifetime points earned since ``since`` (a rolling window's basis)."""
    statement = select(func.coalesce(func.sum(ledger_entries.c.lifetime_delta_minor), 0)).where(
        ledger_entries.c.merchant_id == merchant_id,
        ledger_entries.c.customer_id == customer_id,
        ledger_entries.c.created_at > since,
    )
    return int((await connection.execute(statement)).scalar_one())


async def spend_window_total(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    since: datetime,
) -> int:
    """Money spent (net of refunds) on orders placed since ``since``."""
    statement = select(
        func.coalesce(func.sum(orders.c.total_minor - orders.c.refunded_minor), 0)
    ).where(
        orders.c.merchant_id == merchant_id,
        orders.c.customer_id == customer_id,
        orders.c.placed_at > since,
    )
    return int((await connection.execute(statement)).scalar_one())
