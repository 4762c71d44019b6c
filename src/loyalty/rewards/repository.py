from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.repository import load_with_balances
from loyalty.db import merchant_cache
from loyalty.db.coalesce import ReadCoalescer
from loyalty.db.engine import Database
from loyalty.db.merchant_cache import CATALOGUE_CHANNEL, MerchantCache
from loyalty.db.raw import fetch_rows_sqlite, merchant_coalescer
from loyalty.db.tables import customer_rewards, customers, program_settings, rewards

# A catalogue is shown whole; this bounds it.
CATALOGUE_REWARDS_MAX = 500


async def next_number(connection: AsyncConnection, merchant_id: uuid.UUID) -> int:
    """The merchant's next reward number (the counter row serialises creators)."""
    number = (
        await connection.execute(
            program_settings.update()
            .where(program_settings.c.merchant_id == merchant_id)
            .values(reward_number_last=program_settings.c.reward_number_last + 1)
            .returning(program_settings.c.reward_number_last)
        )
    ).scalar_one()
    return int(number)


async def insert(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(rewards.insert().values(**values))
    await announce_catalogue(connection, values["merchant_id"])


async def update(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    reward_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    await connection.execute(
        rewards.update()
        .where(rewards.c.merchant_id == merchant_id, rewards.c.id == reward_id)
        .values(**values)
    )
    await announce_catalogue(connection, merchant_id)


async def get(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: uuid.UUID, *, lock: bool = False
) -> Any | None:
    statement = select(rewards).where(
        rewards.c.merchant_id == merchant_id, rewards.c.id == reward_id
    )
    if lock:
        statement = statement.with_for_update()
    return (await connection.execute(statement)).one_or_none()


async def list_page(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    after_number: int | None,
    limit: int,
    active_only: bool = False,
) -> list[Any]:
    statement = select(rewards).where(
        rewards.c.merchant_id == merchant_id, rewards.c.deleted_at.is_(None)
    )
    if active_only:
        statement = statement.where(rewards.c.active.is_(True))
    if after_number is not None:
        statement = statement.where(rewards.c.number > after_number)
    return list(await connection.execute(statement.order_by(rewards.c.number).limit(limit)))


def _with_customer() -> Select[Any]:
    return select(customer_rewards, customers.c.external_id).join(
        customers,
        (customers.c.merchant_id == customer_rewards.c.merchant_id)
        & (customers.c.id == customer_rewards.c.customer_id),
    )


async def get_customer_reward(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_reward_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Any | None:
    """The customer reward with its customer's platform id."""
    statement = _with_customer().where(
        customer_rewards.c.merchant_id == merchant_id, customer_rewards.c.id == customer_reward_id
    )
    if lock:
        statement = statement.with_for_update(of=customer_rewards)
    return (await connection.execute(statement)).one_or_none()


async def update_customer_reward(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_reward_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    await connection.execute(
        customer_rewards.update()
        .where(
            customer_rewards.c.merchant_id == merchant_id,
            customer_rewards.c.id == customer_reward_id,
        )
        .values(**values)
    )


async def claim_due_for_expiry(connection: AsyncConnection, now: datetime, limit: int) -> list[Any]:
    """Active rewards past their expiry, locked; rows another worker holds are skipped."""
    statement = (
        _with_customer()
        .where(customer_rewards.c.status == "active", customer_rewards.c.expires_at <= now)
        .order_by(customer_rewards.c.expires_at)
        .limit(limit)
        .with_for_update(of=customer_rewards, skip_locked=True)
    )
    return list(await connection.execute(statement))


# The redeemable endpoint's reads (a hot path): straight on the driver. On
# Postgres the catalogue is the merchant's, the same for every customer: it is
# kept per process (``Database.catalogue_cache``, emptied by ``announce_catalogue``
# whenever a reward changes), and the customer's part (balance and rewards) is
# one coalesced statement for all the requests waiting (``loyalty.db.coalesce``).
_CATALOGUE_POSTGRES = """
SELECT coalesce(json_agg(r), '[]')
FROM (SELECT id, name, description, reward_type, points_cost_minor,
             reward_rule::json AS reward_rule
      FROM rewards
      WHERE merchant_id = $1 AND deleted_at IS NULL AND active
      ORDER BY points_cost_minor, number
      LIMIT $2) AS r
"""
_HOLDERS_POSTGRES = """
SELECT r.merchant_id, r.value, c.id, b.points_balance_minor,
       (SELECT coalesce(json_agg(h), '[]')
        FROM (SELECT id, reward_type, status, discount_code, points_used_minor,
                     expires_at, used_at, created_at
              FROM customer_rewards
              WHERE merchant_id = r.merchant_id AND customer_id = c.id
              ORDER BY created_at DESC, id DESC
              LIMIT $3) AS h) AS held
FROM unnest($1::uuid[], $2::text[]) AS r(merchant_id, value)
JOIN customers c ON c.merchant_id = r.merchant_id AND c.{column} = r.value
JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
"""
_CATALOGUE_SQLITE = """
SELECT id, name, description, reward_type, points_cost_minor, reward_rule
FROM rewards
WHERE merchant_id = ? AND deleted_at IS NULL AND active = 1
ORDER BY points_cost_minor, number
LIMIT ?
"""
_CUSTOMER_REWARDS_SQLITE = """
SELECT id, reward_type, status, discount_code, points_used_minor, expires_at, used_at, created_at
FROM customer_rewards
WHERE merchant_id = ? AND customer_id = ?
ORDER BY created_at DESC, id DESC
LIMIT ?
"""


class CatalogueRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    description: str | None
    reward_type: str
    points_cost_minor: int
    reward_rule: dict[str, Any]


class HeldRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    reward_type: str
    status: str
    discount_code: str | None
    points_used_minor: int
    expires_at: datetime | None
    used_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RedeemableRows:
    customer_id: uuid.UUID
    points_balance_minor: int
    catalogue: list[CatalogueRow]
    held: list[HeldRow]


_catalogue_decoder = msgspec.json.Decoder(list[CatalogueRow])
_held_decoder = msgspec.json.Decoder(list[HeldRow])


async def announce_catalogue(connection: AsyncConnection, merchant_id: uuid.UUID) -> None:
    """In a transaction that changes a reward: every process forgets the merchant's
    cached catalogue when it commits."""
    await merchant_cache.announce(connection, CATALOGUE_CHANNEL, merchant_id)


def _holders(database: Database, column: str, limit: int) -> ReadCoalescer[tuple[uuid.UUID, str]]:
    return merchant_coalescer(
        database,
        f"reward_holders_by_{column}_{limit}",
        _HOLDERS_POSTGRES.format(column=column),
        key_column="value",
        extra=(limit,),
    )


async def _catalogue_postgres(database: Database, merchant_id: uuid.UUID) -> list[CatalogueRow]:
    cache: MerchantCache[list[CatalogueRow]] = database.catalogue_cache
    cached = cache.get(merchant_id)
    if cached is not None:
        return cached
    generation = cache.generation
    async with database.raw_connection() as connection:
        text = await connection.fetchval(_CATALOGUE_POSTGRES, merchant_id, CATALOGUE_REWARDS_MAX)
    catalogue = _catalogue_decoder.decode(text)
    cache.put(merchant_id, catalogue, generation)
    return catalogue


async def redeemable_rows(
    database: Database, merchant_id: uuid.UUID, *, column: str, value: str, limit: int
) -> RedeemableRows | None:
    """The customer's balance, the active catalogue cheapest first, the newest rewards."""
    if database.raw_pool is not None:
        record = await _holders(database, column, limit).get((merchant_id, value))
        if record is None:
            return None
        return RedeemableRows(
            record["id"],
            record["points_balance_minor"],
            await _catalogue_postgres(database, merchant_id),
            _held_decoder.decode(record["held"]),
        )
    customer = await load_with_balances(
        database,
        merchant_id,
        external_id=value if column == "external_id" else None,
        email=value if column == "email" else None,
    )
    if customer is None:
        return None
    catalogue = await fetch_rows_sqlite(
        database, _CATALOGUE_SQLITE, merchant_id.hex, CATALOGUE_REWARDS_MAX
    )
    held = await fetch_rows_sqlite(
        database, _CUSTOMER_REWARDS_SQLITE, merchant_id.hex, customer.id.hex, limit
    )
    return RedeemableRows(
        customer.id,
        customer.points_balance_minor,
        [
            CatalogueRow(
                row.id,
                row.name,
                row.description,
                row.reward_type,
                row.points_cost_minor,
                msgspec.json.decode(row.reward_rule),
            )
            for row in catalogue
        ],
        [
            HeldRow(
                row.id,
                row.reward_type,
                row.status,
                row.discount_code,
                row.points_used_minor,
                row.expires_at,
                row.used_at,
                row.created_at,
            )
            for row in held
        ],
    )
