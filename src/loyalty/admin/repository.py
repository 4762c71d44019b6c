"""The admin's own SQL: its generated secret, staff sessions and failed sign-ins."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.dialect import upsert_insert
from loyalty.db.tables import admin_sessions, instance_secrets, login_attempts, merchants, users

# --- instance secrets -------------------------------------------------------------


async def keep_secret(connection: AsyncConnection, name: str, value: str, now: datetime) -> str:
    """Store ``value`` under ``name`` unless a value is there already; the stored one.

    Processes starting together each propose a value; the first insert wins and
    every process reads the winner back."""
    await connection.execute(
        upsert_insert(connection, instance_secrets)
        .values(name=name, value=value, created_at=now)
        .on_conflict_do_nothing(index_elements=[instance_secrets.c.name])
    )
    stored = await connection.execute(
        select(instance_secrets.c.value).where(instance_secrets.c.name == name)
    )
    return str(stored.scalar_one())


# --- sessions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session with its user and merchant, as one query reads them."""

    merchant_id: uuid.UUID
    merchant_name: str
    token_hash: str
    user_id: uuid.UUID
    email: str
    role: str
    disabled_at: datetime | None
    last_seen_at: datetime


async def insert_session(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    token_hash: str,
    user_id: uuid.UUID,
    now: datetime,
) -> None:
    await connection.execute(
        admin_sessions.insert().values(
            merchant_id=merchant_id,
            token_hash=token_hash,
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
        )
    )


async def find_session(
    connection: AsyncConnection, merchant_id: uuid.UUID, token_hash: str
) -> SessionRow | None:
    statement = (
        select(
            admin_sessions.c.merchant_id,
            merchants.c.name.label("merchant_name"),
            admin_sessions.c.token_hash,
            admin_sessions.c.user_id,
            users.c.email,
            users.c.role,
            users.c.disabled_at,
            admin_sessions.c.last_seen_at,
        )
        .join(
            users,
            (users.c.merchant_id == admin_sessions.c.merchant_id)
            & (users.c.id == admin_sessions.c.user_id),
        )
        .join(merchants, merchants.c.id == admin_sessions.c.merchant_id)
        .where(
            admin_sessions.c.merchant_id == merchant_id,
            admin_sessions.c.token_hash == token_hash,
        )
    )
    row = (await connection.execute(statement)).one_or_none()
    if row is None:
        return None
    return SessionRow(**row._asdict())


async def touch_session(
    connection: AsyncConnection, merchant_id: uuid.UUID, token_hash: str, now: datetime
) -> None:
    await connection.execute(
        update(admin_sessions)
        .where(
            admin_sessions.c.merchant_id == merchant_id,
            admin_sessions.c.token_hash == token_hash,
        )
        .values(last_seen_at=now)
    )


async def delete_session(
    connection: AsyncConnection, merchant_id: uuid.UUID, token_hash: str
) -> None:
    await connection.execute(
        delete(admin_sessions).where(
            admin_sessions.c.merchant_id == merchant_id,
            admin_sessions.c.token_hash == token_hash,
        )
    )


async def delete_idle_sessions(connection: AsyncConnection, idle_since: datetime) -> int:
    result = await connection.execute(
        delete(admin_sessions).where(admin_sessions.c.last_seen_at < idle_since)
    )
    return int(result.rowcount or 0)


# --- sign-in ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """An enabled user with the email, in one merchant."""

    merchant_id: uuid.UUID
    merchant_name: str
    user_id: uuid.UUID
    role: str
    password_hash: str


async def enabled_users_with_email(connection: AsyncConnection, email: str) -> list[Candidate]:
    statement = (
        select(
            users.c.merchant_id,
            merchants.c.name.label("merchant_name"),
            users.c.id.label("user_id"),
            users.c.role,
            users.c.password_hash,
        )
        .join(merchants, merchants.c.id == users.c.merchant_id)
        .where(users.c.email == email, users.c.disabled_at.is_(None))
        .order_by(merchants.c.name, users.c.merchant_id)
    )
    return [Candidate(**row._asdict()) for row in await connection.execute(statement)]


async def failures_since(
    connection: AsyncConnection, email: str, since: datetime
) -> list[datetime]:
    """The email's failed attempts from ``since`` on, oldest first."""
    statement = (
        select(login_attempts.c.attempted_at)
        .where(login_attempts.c.email == email, login_attempts.c.attempted_at >= since)
        .order_by(login_attempts.c.attempted_at)
    )
    return list((await connection.execute(statement)).scalars())


async def count_failures(connection: AsyncConnection, email: str) -> int:
    statement = select(func.count()).where(login_attempts.c.email == email)
    return int((await connection.execute(statement)).scalar_one())


async def insert_failure(
    connection: AsyncConnection, email: str, attempt_id: uuid.UUID, now: datetime
) -> None:
    await connection.execute(
        login_attempts.insert().values(email=email, id=attempt_id, attempted_at=now)
    )


async def clear_failures(connection: AsyncConnection, email: str) -> None:
    await connection.execute(delete(login_attempts).where(login_attempts.c.email == email))


async def purge_failures(connection: AsyncConnection, before: datetime) -> int:
    result = await connection.execute(
        delete(login_attempts).where(login_attempts.c.attempted_at < before)
    )
    return int(result.rowcount or 0)
