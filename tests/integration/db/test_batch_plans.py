"""The ledger batch's statements are planned as key lookups, whatever the tables hold.

Every statement of a batch is written to be driven by the batch's own rows
(``unnest``) and to reach each table through a primary or unique key. Left to
its statistics, Postgres plans a statement first run while a table is small
(a new database, a table not yet analyzed) as a scan of the whole table, and
each pooled connection keeps that generic plan as the table grows.
``BEGIN_BATCH`` holds the planner to the intended plans for the batch's
transaction; these tests read the generic plans of the batch's statements on a
fresh, empty database (the worst case) and fail on any plan that reads a table
other than through an index condition.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import pytest

from loyalty.db.engine import Database
from loyalty.ledger.engine.changes import Changes
from loyalty.ledger.storage import postgres
from loyalty.ledger.storage.postgres import BEGIN_BATCH, PostgresStore
from loyalty.settings import Settings
from tests.support.postgres import migrated_connection, postgres_url_for

pytestmark = pytest.mark.postgres_only

STATEMENTS: dict[str, str] = {
    "stored keys": postgres._STORED_KEYS,
    "lock by platform id": postgres._LOCK_BY_PLATFORM_ID,
    "lock customers": postgres._LOCK_CUSTOMERS,
    "apply": postgres._APPLY,
    "beyond the ledger": postgres._beyond_the_ledger(Changes())[0],
    "rewards": postgres._REWARDS,
    "redeemed": postgres._REDEEMED,
    "customer rewards": postgres._CUSTOMER_REWARDS,
    "reward codes": postgres._REWARD_CODES,
    "rewards of": postgres._REWARDS_OF,
    "orders": postgres._ORDERS,
    "earn rules": postgres._EARN_RULES,
    "action counts": postgres._ACTION_COUNTS,
    "pending": postgres._PENDING,
    "pending of": postgres._PENDING_OF,
    "lots": postgres._LOTS,
    "tiers": postgres._TIERS,
    **{f"window {basis}": sql for basis, sql in postgres._WINDOWS.items()},
    "erase customer": postgres._ERASE_CUSTOMER,
    "rekey balance": postgres._REKEY_BALANCE,
    "events of": postgres._EVENTS_OF,
    "blank events": postgres._BLANK_EVENTS,
}
# Reading through an index: an index scan with a condition, or a bitmap scan.
KEYED_SCANS = frozenset({"Index Scan", "Index Only Scan", "Bitmap Heap Scan"})


@pytest.fixture(scope="module")
async def connection() -> AsyncIterator[asyncpg.Connection]:
    async with migrated_connection("loyalty_plans") as connected:
        yield connected


async def generic_plan(connection: asyncpg.Connection, sql: str, begin: str) -> dict[str, Any]:
    """The plan a pooled connection keeps for ``sql`` in a transaction begun by ``begin``."""
    parameters = len((await connection.prepare(sql)).get_parameters())
    await connection.execute(begin)
    try:
        await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE batch_statement AS {sql}")
        arguments = ", ".join(["NULL"] * parameters)
        text = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) EXECUTE batch_statement({arguments})"
        )
    finally:
        # A prepared statement outlives the transaction; DEALLOCATE ALL would drop the
        # driver's own.
        await connection.execute("ROLLBACK")
        with suppress(asyncpg.InvalidSQLStatementNameError):
            await connection.execute("DEALLOCATE batch_statement")
    plan: dict[str, Any] = json.loads(text)[0]["Plan"]
    return plan


def unkeyed_reads(plan: dict[str, Any]) -> list[str]:
    """Every node of ``plan`` that reads a table other than through an index
    condition, and every hash or merge join."""
    found = []
    node_type = plan["Node Type"]
    if node_type in ("Hash Join", "Merge Join"):
        found.append(node_type)
    elif "Relation Name" in plan and node_type != "ModifyTable":
        keyed = node_type in KEYED_SCANS and ("Index Cond" in plan or "Recheck Cond" in plan)
        if not keyed:
            found.append(f"{node_type} on {plan['Relation Name']}")
    for child in plan.get("Plans", []):
        found += unkeyed_reads(child)
    return found


@pytest.mark.parametrize("name", sorted(STATEMENTS))
async def test_each_batch_statement_reads_tables_only_through_their_keys(
    connection: asyncpg.Connection, name: str
) -> None:
    plan = await generic_plan(connection, STATEMENTS[name], BEGIN_BATCH)
    assert unkeyed_reads(plan) == [], json.dumps(plan, indent=1)


async def test_without_the_settings_a_new_database_gets_a_table_scan(
    connection: asyncpg.Connection,
) -> None:
    """What BEGIN_BATCH prevents: on the empty tables of a new database the planner
    scans the whole key table, a plan each connection would then keep."""
    plan = await generic_plan(connection, postgres._STORED_KEYS, "BEGIN")
    assert "Seq Scan on idempotency_keys" in unkeyed_reads(plan)


@asynccontextmanager
async def store() -> AsyncIterator[tuple[PostgresStore, asyncpg.Connection]]:
    """The writer's store on a new migrated database (one pooled connection), and
    another connection to look with."""
    async with migrated_connection("loyalty_batch") as looking:
        name = await looking.fetchval("SELECT current_database()")
        database = Database(Settings(database_url=postgres_url_for(name), raw_pool_size=1))
        await database.start()
        try:
            yield PostgresStore(database), looking
        finally:
            await database.dispose()


async def test_the_settings_last_only_as_long_as_the_batch() -> None:
    async with store() as (writer, _):
        async with writer.batch() as session:
            assert await session.connection.fetchval("SHOW enable_seqscan") == "off"
            assert await session.connection.fetchval("SHOW enable_hashjoin") == "off"
            assert await session.connection.fetchval("SHOW enable_mergejoin") == "off"
        async with writer.database.raw_connection() as pooled:
            assert pooled.is_in_transaction() is False
            assert await pooled.fetchval("SHOW enable_seqscan") == "on"
            assert await pooled.fetchval("SHOW enable_hashjoin") == "on"
            assert await pooled.fetchval("SHOW enable_mergejoin") == "on"


INSERT_MERCHANT = "INSERT INTO merchants (id, name, created_at) VALUES ($1, 'shop', now())"


async def insert_then(
    writer: PostgresStore, *, fail: bool = False, swallow_an_error: bool = False
) -> None:
    """A batch that writes a merchant, then fails, or has a statement fail and goes on."""
    async with writer.batch() as session:
        await session.connection.execute(INSERT_MERCHANT, uuid.uuid4())
        if fail:
            raise RuntimeError("the batch failed")
        if swallow_an_error:
            with suppress(asyncpg.DivisionByZeroError):
                await session.connection.execute("SELECT 1 / 0")


async def test_a_batch_commits_what_it_wrote() -> None:
    async with store() as (writer, looking):
        await insert_then(writer)
        assert await looking.fetchval("SELECT count(*) FROM merchants") == 1


async def test_a_failed_batch_leaves_nothing() -> None:
    async with store() as (writer, looking):
        with pytest.raises(RuntimeError):
            await insert_then(writer, fail=True)
        assert await looking.fetchval("SELECT count(*) FROM merchants") == 0
        async with writer.database.raw_connection() as pooled:
            assert pooled.is_in_transaction() is False


async def test_a_batch_whose_transaction_aborted_is_not_taken_for_committed() -> None:
    """Postgres answers COMMIT of an aborted transaction with ROLLBACK, not an error."""
    async with store() as (writer, looking):
        with pytest.raises(AssertionError, match="COMMIT answered ROLLBACK"):
            await insert_then(writer, swallow_an_error=True)
        assert await looking.fetchval("SELECT count(*) FROM merchants") == 0
