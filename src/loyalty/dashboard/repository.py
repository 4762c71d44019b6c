"""The dashboard's reads: the merchant's daily rollups, summed (never the entries)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import func, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import daily_rollups, program_settings

_PLUS = func.sum(daily_rollups.c.plus_minor).label("plus")
_MINUS = func.sum(daily_rollups.c.minus_minor).label("minus")


async def figures(connection: AsyncConnection, merchant_id: uuid.UUID, since: date) -> list[Any]:
    """Every metric's (plus, minus): all time (``day`` None), and per day from
    ``since`` on. One statement, so one snapshot: the totals and the days agree
    even while the ledger writes."""
    mine = daily_rollups.c.merchant_id == merchant_id
    totals = (
        select(null().label("day"), daily_rollups.c.metric, _PLUS, _MINUS)
        .where(mine)
        .group_by(daily_rollups.c.metric)
    )
    days = (
        select(daily_rollups.c.day, daily_rollups.c.metric, _PLUS, _MINUS)
        .where(mine, daily_rollups.c.day >= since)
        .group_by(daily_rollups.c.day, daily_rollups.c.metric)
    )
    return list((await connection.execute(union_all(totals, days))).all())


async def money_settings(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    statement = select(program_settings.c.currency, program_settings.c.point_value_micros).where(
        program_settings.c.merchant_id == merchant_id
    )
    return (await connection.execute(statement)).one()
