from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth.cache import REVOCATION_CHANNEL
from loyalty.auth.schemas import ApiKey
from loyalty.db.engine import Database
from loyalty.db.raw import fetch_row_postgres, fetch_row_sqlite
from loyalty.db.tables import api_keys


def _to_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        merchant_id=row.merchant_id,
        name=row.name,
        prefix=row.prefix,
        scopes=row.scopes.split(),
        rate_limit=row.rate_limit,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


async def insert_key(connection: AsyncConnection, key: ApiKey, token_sha256: str) -> None:
    await connection.execute(
        api_keys.insert().values(
            merchant_id=key.merchant_id,
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            token_sha256=token_sha256,
            scopes=" ".join(key.scopes),
            rate_limit=key.rate_limit,
            created_at=key.created_at,
        )
    )


_FIND_BY_PREFIX = (
    "SELECT merchant_id, id, name, prefix, token_sha256, scopes, rate_limit, created_at, "
    "revoked_at FROM api_keys WHERE prefix = "
)


async def find_by_prefix(database: Database, prefix: str) -> tuple[ApiKey, str] | None:
    """The key with this prefix and its stored hash (every request: on the driver)."""
    row: Any
    if database.is_sqlite:
        row = await fetch_row_sqlite(database, _FIND_BY_PREFIX + "?", prefix)
    else:
        row = await fetch_row_postgres(database, _FIND_BY_PREFIX + "$1", prefix)
    if row is None:
        return None
    return _to_key(row), row.token_sha256


async def list_keys(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[ApiKey]:
    rows = await connection.execute(
        select(api_keys)
        .where(api_keys.c.merchant_id == merchant_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [_to_key(row) for row in rows]


async def find_by_id_or_prefix(connection: AsyncConnection, reference: str) -> list[ApiKey]:
    conditions: list[Any] = [api_keys.c.prefix == reference]
    with contextlib.suppress(ValueError):
        conditions.append(api_keys.c.id == uuid.UUID(reference))
    rows = await connection.execute(select(api_keys).where(or_(*conditions)))
    return [_to_key(row) for row in rows]


async def mark_revoked(connection: AsyncConnection, key: ApiKey, now: datetime) -> datetime:
    await connection.execute(
        api_keys.update()
        .where(
            api_keys.c.merchant_id == key.merchant_id,
            api_keys.c.id == key.id,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return key.revoked_at or now


async def announce_revocation(connection: AsyncConnection, prefix: str) -> None:
    """Tell every API process (Postgres NOTIFY, delivered at commit)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_notify(:channel, :prefix)"),
            {"channel": REVOCATION_CHANNEL, "prefix": prefix},
        )
