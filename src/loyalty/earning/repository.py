from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import earn_rules


async def list_rules(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    statement = (
        select(earn_rules).where(earn_rules.c.merchant_id == merchant_id).order_by(earn_rules.c.id)
    )
    return list(await connection.execute(statement))


async def get_rule(
    connection: AsyncConnection, merchant_id: uuid.UUID, rule_id: uuid.UUID, *, lock: bool = False
) -> Any | None:
    statement = select(earn_rules).where(
        earn_rules.c.merchant_id == merchant_id, earn_rules.c.id == rule_id
    )
    if lock:
        statement = statement.with_for_update()
    return (await connection.execute(statement)).one_or_none()


async def find_by_type(connection: AsyncConnection, merchant_id: uuid.UUID, rule_type: str) -> Any:
    statement = select(earn_rules).where(
        earn_rules.c.merchant_id == merchant_id, earn_rules.c.type == rule_type
    )
    return (await connection.execute(statement)).one_or_none()


async def insert(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(earn_rules.insert().values(**values))


async def update(
    connection: AsyncConnection, merchant_id: uuid.UUID, rule_id: uuid.UUID, values: dict[str, Any]
) -> None:
    await connection.execute(
        earn_rules.update()
        .where(earn_rules.c.merchant_id == merchant_id, earn_rules.c.id == rule_id)
        .values(**values)
    )
