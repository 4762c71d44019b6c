"""The Postgres cluster the tests create their databases on."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def postgres_admin(sql: str) -> None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"Postgres is required for the test suite and is unreachable at "
            f"{POSTGRES_ADMIN_URL}: {error}"
        )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_url_for(database_name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database_name}"


@asynccontextmanager
async def migrated_connection(prefix: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a new database migrated to head (the migrations, not the
    models), dropped afterwards."""
    from loyalty.db.migrate import upgrade_to_head_async

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    url = postgres_url_for(name)
    try:
        await upgrade_to_head_async(url)
        connection = await asyncpg.connect(url)
        try:
            yield connection
        finally:
            await connection.close()
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
