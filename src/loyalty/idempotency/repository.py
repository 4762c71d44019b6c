from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.dialect import upsert_insert
from loyalty.db.tables import idempotency_keys

IN_PROGRESS_STATUS = 0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_fingerprint: str
    response_status: int
    response_body: str


async def claim(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    key: str,
    fingerprint: str,
    now: datetime,
) -> StoredResponse | None:
    """Claim ``key`` for this transaction, or return what an earlier request stored.

    The claim row is uncommitted until the request's transaction commits, so
    on Postgres a concurrent duplicate blocks on the unique key and then sees
    the stored response; on SQLite writers are already serialised.
    """
    statement = (
        upsert_insert(connection, idempotency_keys)
        .values(
            merchant_id=merchant_id,
            key=key,
            request_fingerprint=fingerprint,
            response_status=IN_PROGRESS_STATUS,
            response_body="",
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=[idempotency_keys.c.merchant_id, idempotency_keys.c.key]
        )
        .returning(idempotency_keys.c.key)
    )
    if (await connection.execute(statement)).scalar_one_or_none() is not None:
        return None
    row = (
        await connection.execute(
            select(
                idempotency_keys.c.request_fingerprint,
                idempotency_keys.c.response_status,
                idempotency_keys.c.response_body,
            ).where(idempotency_keys.c.merchant_id == merchant_id, idempotency_keys.c.key == key)
        )
    ).one()
    return StoredResponse(row.request_fingerprint, row.response_status, row.response_body)


async def complete(
    connection: AsyncConnection, merchant_id: uuid.UUID, key: str, status: int, body: str
) -> None:
    await connection.execute(
        idempotency_keys.update()
        .where(idempotency_keys.c.merchant_id == merchant_id, idempotency_keys.c.key == key)
        .values(response_status=status, response_body=body)
    )


async def purge_older_than(connection: AsyncConnection, cutoff: datetime) -> int:
    result = await connection.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < cutoff)
    )
    return int(result.rowcount)
