"""The exports' reads: a merchant's customers and ledger entries in
``(created_at, id)`` order, one chunk at a time (keyset pagination).

Each chunk is one query that starts after the last row of the previous one
(``(created_at, id) > (...)``) and walks an index in order, so no query sorts
and memory does not grow with the number of rows. Every chunk of one export
reads the same snapshot (``snapshot``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.db.tables import customer_balances, customers, ledger_entries, tiers

# The last row of a chunk: the next chunk starts after it.
Keyset = tuple[datetime, uuid.UUID]

# The columns of each row, in this order, are what the service unpacks.
_CUSTOMERS = (
    select(
        customers.c.id,
        customers.c.external_id,
        customers.c.email,
        customers.c.first_name,
        customers.c.last_name,
        customers.c.date_of_birth,
        customers.c.status,
        customers.c.total_spent_minor,
        customers.c.created_at,
        customer_balances.c.points_balance_minor,
        customer_balances.c.pending_points_minor,
        customer_balances.c.lifetime_points_minor,
        customer_balances.c.points_spent_minor,
        customer_balances.c.points_expired_minor,
        customer_balances.c.store_credit_balance_minor,
        tiers.c.name.label("tier_name"),
    )
    .select_from(customers)
    .outerjoin(
        customer_balances,
        (customer_balances.c.merchant_id == customers.c.merchant_id)
        & (customer_balances.c.customer_id == customers.c.id),
    )
    .outerjoin(
        tiers,
        (tiers.c.merchant_id == customer_balances.c.merchant_id)
        & (tiers.c.id == customer_balances.c.tier_id),
    )
)

_ENTRIES = (
    select(
        ledger_entries.c.id,
        ledger_entries.c.points_minor,
        ledger_entries.c.kind,
        ledger_entries.c.description,
        ledger_entries.c.internal_note,
        ledger_entries.c.apply_to_lifetime,
        ledger_entries.c.balance_after_minor,
        ledger_entries.c.sequence,
        ledger_entries.c.expires_at,
        ledger_entries.c.created_at,
        customers.c.external_id,
        customers.c.status,
        ledger_entries.c.actor,
    )
    .select_from(ledger_entries)
    .join(
        customers,
        (customers.c.merchant_id == ledger_entries.c.merchant_id)
        & (customers.c.id == ledger_entries.c.customer_id),
    )
)


@asynccontextmanager
async def snapshot(database: Database) -> AsyncIterator[AsyncConnection]:
    """A read-only transaction whose every query sees the same data.

    Postgres: ``REPEATABLE READ READ ONLY`` (one snapshot for all statements);
    SQLite: a deferred transaction keeps the snapshot of its first read (WAL).
    """
    async with database.engine.connect() as connection:
        if not database.is_sqlite:
            connection = await connection.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        async with connection.begin():
            yield connection


def _customers_of(merchant_id: uuid.UUID) -> Select[Any]:
    return _CUSTOMERS.where(customers.c.merchant_id == merchant_id)


def _entries_of(
    merchant_id: uuid.UUID, since: datetime | None, until: datetime | None
) -> Select[Any]:
    query = _ENTRIES.where(ledger_entries.c.merchant_id == merchant_id)
    if since is not None:
        query = query.where(ledger_entries.c.created_at >= since)
    if until is not None:
        query = query.where(ledger_entries.c.created_at < until)
    return query


async def customer_chunk(
    connection: AsyncConnection, merchant_id: uuid.UUID, after: Keyset | None, limit: int
) -> Sequence[Any]:
    """The next ``limit`` customers after ``after``, oldest first, with balances and tier."""
    query = _customers_of(merchant_id)
    if after is not None:
        query = query.where(tuple_(customers.c.created_at, customers.c.id) > after)
    query = query.order_by(customers.c.created_at, customers.c.id).limit(limit)
    rows: Sequence[Any] = (await connection.execute(query)).all()
    return rows


async def entry_chunk(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    since: datetime | None,
    until: datetime | None,
    after: Keyset | None,
    limit: int,
) -> Sequence[Any]:
    """The next ``limit`` ledger entries after ``after`` in ``[since, until)``, oldest
    first, with their customer's platform id and status."""
    query = _entries_of(merchant_id, since, until)
    if after is not None:
        query = query.where(tuple_(ledger_entries.c.created_at, ledger_entries.c.id) > after)
    query = query.order_by(ledger_entries.c.created_at, ledger_entries.c.id).limit(limit)
    rows: Sequence[Any] = (await connection.execute(query)).all()
    return rows


async def count_customers(connection: AsyncConnection, merchant_id: uuid.UUID) -> int:
    query = (
        select(func.count()).select_from(customers).where(customers.c.merchant_id == merchant_id)
    )
    return int((await connection.execute(query)).scalar_one())


async def count_entries(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    since: datetime | None,
    until: datetime | None,
) -> int:
    query = select(func.count()).select_from(ledger_entries)
    query = query.where(ledger_entries.c.merchant_id == merchant_id)
    if since is not None:
        query = query.where(ledger_entries.c.created_at >= since)
    if until is not None:
        query = query.where(ledger_entries.c.created_at < until)
    return int((await connection.execute(query)).scalar_one())
