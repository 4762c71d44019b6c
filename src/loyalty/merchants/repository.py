from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customer_balances, merchants, program_settings
from loyalty.merchants.schemas import Merchant, ProgramSettings
from loyalty.rewards.codes import default_prefix

DEFAULT_DESCRIPTION = "Points adjustment"


async def insert_merchant(connection: AsyncConnection, merchant: Merchant) -> None:
    await connection.execute(
        merchants.insert().values(
            id=merchant.id, name=merchant.name, created_at=merchant.created_at
        )
    )
    await connection.execute(
        program_settings.insert().values(
            merchant_id=merchant.id,
            points_decimals=0,
            default_description=DEFAULT_DESCRIPTION,
            discount_code_prefix=default_prefix(merchant.name),
            updated_at=merchant.created_at,
        )
    )


async def get_merchant(connection: AsyncConnection, merchant_id: uuid.UUID) -> Merchant | None:
    row = (
        await connection.execute(select(merchants).where(merchants.c.id == merchant_id))
    ).one_or_none()
    if row is None:
        return None
    return Merchant(id=row.id, name=row.name, created_at=row.created_at)


async def list_merchants(connection: AsyncConnection) -> list[Merchant]:
    rows = await connection.execute(select(merchants).order_by(merchants.c.created_at))
    return [Merchant(id=row.id, name=row.name, created_at=row.created_at) for row in rows]


async def get_program_settings(
    connection: AsyncConnection, merchant_id: uuid.UUID
) -> ProgramSettings:
    row = await get_program_settings_row(connection, merchant_id)
    return ProgramSettings(
        merchant_id=row.merchant_id,
        points_decimals=row.points_decimals,
        default_description=row.default_description,
        discount_code_prefix=row.discount_code_prefix,
    )


async def set_points_decimals(
    connection: AsyncConnection, merchant_id: uuid.UUID, decimals: int, now: datetime
) -> None:
    await connection.execute(
        program_settings.update()
        .where(program_settings.c.merchant_id == merchant_id)
        .values(points_decimals=decimals, updated_at=now)
    )


async def get_program_settings_row(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    statement = select(program_settings).where(program_settings.c.merchant_id == merchant_id)
    return (await connection.execute(statement)).one()


async def update_program_settings(
    connection: AsyncConnection, merchant_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await connection.execute(
        program_settings.update()
        .where(program_settings.c.merchant_id == merchant_id)
        .values(**values)
    )


async def expiry_totals(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    """Customers and points with a balance, split into dated (in lots) and undated."""
    b = customer_balances
    undated = b.c.points_balance_minor - b.c.expiring_lots_minor
    statement = select(
        func.count().filter(b.c.points_balance_minor > 0).label("customers"),
        func.coalesce(func.sum(b.c.points_balance_minor), 0).label("points_minor"),
        func.count().filter(b.c.expiring_lots_minor > 0).label("dated_customers"),
        func.coalesce(func.sum(b.c.expiring_lots_minor), 0).label("dated_minor"),
        func.count().filter(undated > 0).label("undated_customers"),
        func.coalesce(func.sum(undated), 0).label("undated_minor"),
    ).where(b.c.merchant_id == merchant_id)
    return (await connection.execute(statement)).one()
