"""Imports: the job rows, a stored body's chunks, and customers written in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import msgspec
from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.repository import CUSTOMER_WITH_BALANCES
from loyalty.db.bulk import insert_many
from loyalty.db.tables import (
    customers,
    import_chunks,
    imports,
    tiers,
)

_encoder = msgspec.json.Encoder()

PROFILE_COLUMNS = ("email", "first_name", "last_name", "date_of_birth", "status")


# Jobs ------------------------------------------------------------------------------


async def insert_import(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    import_id: uuid.UUID,
    source: str,
    status: str,
    file_sha256: str,
    file_bytes: int,
    locked_until: datetime | None,
    now: datetime,
) -> None:
    await connection.execute(
        imports.insert().values(
            merchant_id=merchant_id,
            id=import_id,
            source=source,
            status=status,
            file_sha256=file_sha256,
            file_bytes=file_bytes,
            locked_until=locked_until,
            created_at=now,
            started_at=now,
            updated_at=now,
        )
    )


async def get_import(
    connection: AsyncConnection, merchant_id: uuid.UUID, import_id: uuid.UUID
) -> Any | None:
    statement = select(imports).where(
        imports.c.merchant_id == merchant_id, imports.c.id == import_id
    )
    return (await connection.execute(statement)).one_or_none()


async def update_import(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    import_id: uuid.UUID,
    *,
    lease: datetime | None,
    values: dict[str, Any],
) -> bool:
    """Update the job if this process still holds it (``lease`` is its token)."""
    if "errors" in values and not isinstance(values["errors"], str):
        values = {**values, "errors": _encoder.encode(values["errors"]).decode()}
    statement = update(imports).where(
        imports.c.merchant_id == merchant_id, imports.c.id == import_id
    )
    if lease is not None:
        statement = statement.where(imports.c.locked_until == lease)
    result = await connection.execute(statement.values(**values))
    return bool(result.rowcount)


async def claim_abandoned(
    connection: AsyncConnection, now: datetime, lease: datetime
) -> Any | None:
    """An unfinished import nobody holds (its process died), now held until ``lease``."""
    statement = (
        select(
            imports.c.merchant_id,
            imports.c.id,
            imports.c.source,
            imports.c.file_sha256,
            imports.c.locked_until,
        )
        .where(
            imports.c.status.in_(("validating", "running")),
            or_(imports.c.locked_until.is_(None), imports.c.locked_until < now),
        )
        .order_by(imports.c.locked_until)
        .limit(1)
    )
    if connection.dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    row = (await connection.execute(statement)).one_or_none()
    if row is None:
        return None
    await connection.execute(
        update(imports)
        .where(imports.c.merchant_id == row.merchant_id, imports.c.id == row.id)
        .values(locked_until=lease, updated_at=now)
    )
    return row


async def add_chunk(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    import_id: uuid.UUID,
    number: int,
    data: bytes,
) -> None:
    await connection.execute(
        import_chunks.insert().values(
            merchant_id=merchant_id, import_id=import_id, number=number, data=data
        )
    )


async def read_chunk(
    connection: AsyncConnection, merchant_id: uuid.UUID, import_id: uuid.UUID, number: int
) -> bytes | None:
    statement = select(import_chunks.c.data).where(
        import_chunks.c.merchant_id == merchant_id,
        import_chunks.c.import_id == import_id,
        import_chunks.c.number == number,
    )
    data: bytes | None = (await connection.execute(statement)).scalar_one_or_none()
    return data


async def delete_chunks(
    connection: AsyncConnection, merchant_id: uuid.UUID, import_id: uuid.UUID
) -> None:
    await connection.execute(
        delete(import_chunks).where(
            import_chunks.c.merchant_id == merchant_id, import_chunks.c.import_id == import_id
        )
    )


async def delete_import(
    connection: AsyncConnection, merchant_id: uuid.UUID, import_id: uuid.UUID
) -> None:
    await connection.execute(
        delete(imports).where(imports.c.merchant_id == merchant_id, imports.c.id == import_id)
    )


async def list_imports(
    connection: AsyncConnection, merchant_id: uuid.UUID, *, limit: int
) -> list[Any]:
    """The merchant's latest imports, newest first (ids are UUIDv7: they grow with time)."""
    statement = (
        select(imports)
        .where(imports.c.merchant_id == merchant_id)
        .order_by(imports.c.id.desc())
        .limit(limit)
    )
    return list(await connection.execute(statement))


# Customers in bulk -------------------------------------------------------------------


async def entry_tier(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any | None:
    """The tier every new customer starts in (threshold 0), if the programme has one."""
    statement = select(tiers.c.id, tiers.c.name).where(
        tiers.c.merchant_id == merchant_id, tiers.c.threshold_minor == 0
    )
    return (await connection.execute(statement)).one_or_none()


async def find_customers(
    connection: AsyncConnection, merchant_id: uuid.UUID, external_ids: Iterable[str]
) -> dict[str, Any]:
    """The customers holding these platform ids, with their profile."""
    ids = list(external_ids)
    if not ids:
        return {}
    statement = select(
        customers.c.id,
        customers.c.external_id,
        customers.c.email,
        customers.c.first_name,
        customers.c.last_name,
        customers.c.date_of_birth,
        customers.c.status,
    ).where(customers.c.merchant_id == merchant_id, customers.c.external_id.in_(ids))
    return {row.external_id: row for row in (await connection.execute(statement)).all()}


async def email_holders(
    connection: AsyncConnection, merchant_id: uuid.UUID, emails: Iterable[str]
) -> dict[str, str | None]:
    """Who holds each of these emails: email → platform id."""
    wanted = list(emails)
    if not wanted:
        return {}
    statement = select(customers.c.email, customers.c.external_id).where(
        customers.c.merchant_id == merchant_id, customers.c.email.in_(wanted)
    )
    return {row.email: row.external_id for row in (await connection.execute(statement)).all()}


async def insert_customers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    rows: Sequence[dict[str, Any]],
    tier_id: uuid.UUID | None,
    now: datetime,
) -> set[str]:
    """Insert new customers (each dict: id, external_id and profile columns) and
    their zero balances; the platform ids actually inserted (another process may
    have enrolled one meanwhile)."""
    if not rows:
        return set()
    values = [
        {
            "merchant_id": merchant_id,
            "id": row["id"],
            "external_id": row["external_id"],
            "email": row.get("email"),
            "first_name": row.get("first_name"),
            "last_name": row.get("last_name"),
            "first_name_search": _lower(row.get("first_name")),
            "last_name_search": _lower(row.get("last_name")),
            "date_of_birth": row.get("date_of_birth"),
            "status": row.get("status") or "active",
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    await insert_many(
        connection,
        "customers",
        values,
        on_conflict="ON CONFLICT (merchant_id, external_id) DO NOTHING",
    )
    found = await connection.execute(
        select(customers.c.id, customers.c.external_id).where(
            customers.c.merchant_id == merchant_id,
            customers.c.id.in_([row["id"] for row in rows]),
        )
    )
    inserted = {row.external_id: row.id for row in found.all()}
    if inserted:
        await insert_many(
            connection,
            "customer_balances",
            [
                {
                    "merchant_id": merchant_id,
                    "customer_id": customer_id,
                    "tier_id": tier_id,
                    "updated_at": now,
                }
                for customer_id in inserted.values()
            ],
        )
    return set(inserted)


async def update_profiles(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    changes: Sequence[tuple[uuid.UUID, dict[str, Any]]],
    now: datetime,
) -> None:
    """Set each customer's profile columns (the full profile after the file's cells)."""
    if not changes:
        return
    statement = (
        update(customers)
        .where(
            and_(
                customers.c.merchant_id == bindparam("m"),
                customers.c.id == bindparam("i"),
            )
        )
        .values(
            email=bindparam("e"),
            first_name=bindparam("f"),
            last_name=bindparam("l"),
            first_name_search=bindparam("fs"),
            last_name_search=bindparam("ls"),
            date_of_birth=bindparam("d"),
            status=bindparam("s"),
            updated_at=bindparam("u"),
        )
    )
    await connection.execute(
        statement,
        [
            {
                "m": merchant_id,
                "i": customer_id,
                "e": profile["email"],
                "f": profile["first_name"],
                "l": profile["last_name"],
                "fs": _lower(profile["first_name"]),
                "ls": _lower(profile["last_name"]),
                "d": profile["date_of_birth"],
                "s": profile["status"],
                "u": now,
            }
            for customer_id, profile in changes
        ],
    )


async def customers_with_balances(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_ids: Sequence[uuid.UUID]
) -> list[Any]:
    if not customer_ids:
        return []
    statement = CUSTOMER_WITH_BALANCES.where(
        customers.c.merchant_id == merchant_id, customers.c.id.in_(list(customer_ids))
    )
    return list((await connection.execute(statement)).all())


def _lower(value: str | date | None) -> str | None:
    return value.lower() if isinstance(value, str) else None
