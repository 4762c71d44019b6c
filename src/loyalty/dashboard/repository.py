"""The dashboard's reads: the merchant's daily rollups, summed (never the entries)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import daily_rollups, program_settings


async def by_day(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    """Every metric's (plus, minus) per day, all time, in one statement (one snapshot:
    the totals and the chart agree even while the ledger writes)."""
    statement = (
        select(
            daily_rollups.c.day,
            daily_rollups.c.metric,
            func.sum(daily_rollups.c.plus_minor).label("plus"),
            func.sum(daily_rollups.c.minus_minor).label("minus"),
        )
        .where(daily_rollups.c.merchant_id == merchant_id)
        .group_by(daily_rollups.c.day, daily_rollups.c.metric)
    )
    return list((await connection.execute(statement)).all())


async def money_settings(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    statement = select(program_settings.c.currency, program_settings.c.point_value_micros).where(
        program_settings.c.merchant_id == merchant_id
    )
    return (await connection.execute(statement)).one()
