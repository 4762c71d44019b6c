"""The database layer's own guarantees."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from loyalty.db.engine import Database, is_unavailable
from tests.support.tenant import Tenant


async def _fail_inside(database: Database) -> asyncpg.Connection:
    failed: asyncpg.Connection | None = None
    try:
        async with database.raw_connection() as connection:
            failed = connection._con  # the pooled connection behind the proxy
            raise RuntimeError("mid-operation")
    except RuntimeError:
        assert failed is not None
        return failed
    raise AssertionError("unreachable")


async def test_a_driver_connection_that_failed_is_never_reused(tenant: Tenant) -> None:
    database = tenant.database
    if database.is_sqlite:
        return  # one reader and one writer connection, no pool
    assert (await _fail_inside(database)).is_closed()

    # A cancelled user (a client gone mid-query) does not leave its connection behind either.
    started = asyncio.Event()
    cancelled: list[asyncpg.Connection] = []

    async def slow() -> None:
        async with database.raw_connection() as connection:
            cancelled.append(connection._con)
            started.set()
            await connection.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled[0].is_closed()
    async with database.raw_connection() as connection:
        assert await connection.fetchval("SELECT 1") == 1


def test_a_connection_in_an_inconsistent_state_counts_as_lost() -> None:
    error = asyncpg.exceptions.InternalClientError("cannot switch to state 12")
    assert is_unavailable(error)
