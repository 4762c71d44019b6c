from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import users


async def insert_user(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    user_id: uuid.UUID,
    email: str,
    role: str,
    password_hash: str,
    now: datetime,
) -> bool:
    """Insert a user; False when the merchant already has a user with this email."""
    savepoint = await connection.begin_nested()
    try:
        await connection.execute(
            users.insert().values(
                merchant_id=merchant_id,
                id=user_id,
                email=email,
                role=role,
                password_hash=password_hash,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError:
        await savepoint.rollback()
        return False
    await savepoint.commit()
    return True


async def list_users(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    statement = select(users).where(users.c.merchant_id == merchant_id).order_by(users.c.created_at)
    return list(await connection.execute(statement))


async def find_by_email(
    connection: AsyncConnection, merchant_id: uuid.UUID, email: str
) -> Any | None:
    statement = select(users).where(users.c.merchant_id == merchant_id, users.c.email == email)
    return (await connection.execute(statement)).one_or_none()


async def disable(
    connection: AsyncConnection, merchant_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> None:
    await connection.execute(
        update(users)
        .where(
            users.c.merchant_id == merchant_id,
            users.c.id == user_id,
            users.c.disabled_at.is_(None),
        )
        .values(disabled_at=now, updated_at=now)
    )
