"""Webhook endpoints and their delivery attempts (SQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from loyalty.db.engine import Database
from loyalty.db.raw import RecordView
from loyalty.db.tables import events, webhook_attempts, webhook_endpoints
from loyalty.ids import uuid7_floor

_ENDPOINT_COLUMNS = (
    webhook_endpoints.c.id,
    webhook_endpoints.c.url,
    webhook_endpoints.c.event_types,
    webhook_endpoints.c.description,
    webhook_endpoints.c.active,
    webhook_endpoints.c.disabled_reason,
    webhook_endpoints.c.created_at,
    webhook_endpoints.c.updated_at,
)


# Endpoints ----------------------------------------------------------------------


async def insert_endpoint(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(webhook_endpoints).values(**values))


async def get_endpoint(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Any:
    statement = select(*_ENDPOINT_COLUMNS, webhook_endpoints.c.failing_since).where(
        webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.id == endpoint_id
    )
    if lock:
        statement = statement.with_for_update()
    return (await connection.execute(statement)).first()


async def list_endpoints(
    connection: AsyncConnection, merchant_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Any]:
    statement = select(*_ENDPOINT_COLUMNS).where(webhook_endpoints.c.merchant_id == merchant_id)
    if after is not None:
        statement = statement.where(webhook_endpoints.c.id > after)
    rows = await connection.execute(statement.order_by(webhook_endpoints.c.id).limit(limit))
    return list(rows)


async def active_endpoints(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Any]:
    rows = await connection.execute(
        select(
            webhook_endpoints.c.id,
            webhook_endpoints.c.event_types,
            webhook_endpoints.c.url,
            webhook_endpoints.c.secret,
            webhook_endpoints.c.previous_secret,
            webhook_endpoints.c.previous_secret_expires_at,
        ).where(
            webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.active.is_(True)
        )
    )
    return list(rows)


async def update_endpoint(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    await connection.execute(
        update(webhook_endpoints)
        .where(
            webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.id == endpoint_id
        )
        .values(**values)
    )


async def delete_endpoint(
    connection: AsyncConnection, merchant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> bool:
    result = await connection.execute(
        delete(webhook_endpoints).where(
            webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.id == endpoint_id
        )
    )
    return bool(result.rowcount)


async def rotate_secret(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    secret: str,
    previous_until: datetime,
    now: datetime,
) -> bool:
    """The new secret; the current one keeps signing until ``previous_until``."""
    result = await connection.execute(
        update(webhook_endpoints)
        .where(
            webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.id == endpoint_id
        )
        .values(
            secret=secret,
            previous_secret=webhook_endpoints.c.secret,
            previous_secret_expires_at=previous_until,
            updated_at=now,
        )
    )
    return bool(result.rowcount)


async def lock_endpoints(
    connection: AsyncConnection, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> list[Any]:
    """Endpoints by (merchant_id, id), locked (a delete waits for the commit)."""
    if not keys:
        return []
    rows = await connection.execute(
        select(
            webhook_endpoints.c.merchant_id,
            webhook_endpoints.c.id,
            webhook_endpoints.c.active,
            webhook_endpoints.c.failing_since,
        )
        .where(tuple_(webhook_endpoints.c.merchant_id, webhook_endpoints.c.id).in_(list(keys)))
        .order_by(webhook_endpoints.c.merchant_id, webhook_endpoints.c.id)
        .with_for_update()
    )
    return list(rows)


async def set_failing(
    connection: AsyncConnection,
    keys: Sequence[tuple[uuid.UUID, uuid.UUID]],
    failing_since: datetime | None,
) -> None:
    """Mark endpoints failing since then (only those not failing yet), or clear it."""
    if not keys:
        return
    condition: ColumnElement[bool] = tuple_(
        webhook_endpoints.c.merchant_id, webhook_endpoints.c.id
    ).in_(list(keys))
    if failing_since is None:
        condition = and_(condition, webhook_endpoints.c.failing_since.is_not(None))
    else:
        condition = and_(condition, webhook_endpoints.c.failing_since.is_(None))
    await connection.execute(
        update(webhook_endpoints).where(condition).values(failing_since=failing_since)
    )


# Attempts -----------------------------------------------------------------------


async def insert_attempts(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(insert(webhook_attempts), rows)


async def claim_candidates(
    connection: AsyncConnection, now: datetime, limit: int, skip_endpoints: Sequence[uuid.UUID]
) -> list[Any]:
    """Due pending attempts, oldest first, locked until the commit (the claim on
    SQLite, whose write lock makes it exclusive; Postgres: ``claim_postgres``)."""
    statement = (
        select(
            webhook_attempts.c.merchant_id,
            webhook_attempts.c.id,
            webhook_attempts.c.endpoint_id,
        )
        .join(
            webhook_endpoints,
            and_(
                webhook_endpoints.c.merchant_id == webhook_attempts.c.merchant_id,
                webhook_endpoints.c.id == webhook_attempts.c.endpoint_id,
            ),
        )
        .where(
            webhook_attempts.c.status == "pending",
            webhook_attempts.c.scheduled_at <= now,
            (webhook_attempts.c.locked_until.is_(None)) | (webhook_attempts.c.locked_until < now),
            # A disabled endpoint gets nothing (disabling failed what was pending).
            webhook_endpoints.c.active.is_(True),
        )
        .order_by(webhook_attempts.c.scheduled_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=webhook_attempts)
    )
    if skip_endpoints:
        statement = statement.where(webhook_attempts.c.endpoint_id.not_in(list(skip_endpoints)))
    return list(await connection.execute(statement))


async def count_due(connection: AsyncConnection, now: datetime) -> int:
    """Pending attempts due by ``now`` (the backlog metric; on the partial index
    ``ix_webhook_attempts_due``)."""
    statement = select(func.count()).where(
        webhook_attempts.c.status == "pending", webhook_attempts.c.scheduled_at <= now
    )
    return int((await connection.execute(statement)).scalar_one())


async def lease(
    connection: AsyncConnection,
    keys: Sequence[tuple[uuid.UUID, uuid.UUID]],
    until: datetime,
) -> list[Any]:
    """Hold the attempts until ``until`` and return them with their events and
    endpoints (the columns of ``CLAIM_POSTGRES``)."""
    if not keys:
        return []
    condition = tuple_(webhook_attempts.c.merchant_id, webhook_attempts.c.id).in_(list(keys))
    await connection.execute(update(webhook_attempts).where(condition).values(locked_until=until))
    rows = await connection.execute(
        select(
            webhook_attempts.c.merchant_id,
            webhook_attempts.c.id,
            webhook_attempts.c.endpoint_id,
            webhook_attempts.c.event_id,
            webhook_attempts.c.attempt,
            webhook_attempts.c.trigger,
            events.c.type,
            events.c.created_at,
            events.c.sequence,
            events.c.customer_ref,
            events.c.payload,
            events.c.actor,
            webhook_endpoints.c.url,
            webhook_endpoints.c.secret,
            webhook_endpoints.c.previous_secret,
            webhook_endpoints.c.previous_secret_expires_at,
        )
        .join(
            events,
            and_(
                events.c.merchant_id == webhook_attempts.c.merchant_id,
                events.c.id == webhook_attempts.c.event_id,
            ),
        )
        .join(
            webhook_endpoints,
            and_(
                webhook_endpoints.c.merchant_id == webhook_attempts.c.merchant_id,
                webhook_endpoints.c.id == webhook_attempts.c.endpoint_id,
            ),
        )
        .where(condition)
    )
    return list(rows)


async def finish_attempts(connection: AsyncConnection, results: list[dict[str, Any]]) -> None:
    """Record attempts' outcomes (keys ``m``, ``i`` and the columns)."""
    if not results:
        return
    await connection.execute(
        update(webhook_attempts)
        .where(
            webhook_attempts.c.merchant_id == bindparam("m"),
            webhook_attempts.c.id == bindparam("i"),
        )
        .values(
            status=bindparam("status"),
            attempted_at=bindparam("attempted_at"),
            response_status=bindparam("response_status"),
            response_duration_ms=bindparam("response_duration_ms"),
            response_body=bindparam("response_body"),
            error=bindparam("error"),
            locked_until=None,
        ),
        results,
    )


async def fail_pending(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    reason: str,
    now: datetime,
) -> None:
    """An endpoint was disabled: its pending attempts fail (recover sends them again)."""
    await connection.execute(
        update(webhook_attempts)
        .where(
            webhook_attempts.c.merchant_id == merchant_id,
            webhook_attempts.c.endpoint_id == endpoint_id,
            webhook_attempts.c.status == "pending",
        )
        .values(status="failed", error=reason, attempted_at=now, locked_until=None)
    )


async def list_attempts(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    event_id: uuid.UUID | None,
    before: uuid.UUID | None,
    limit: int,
) -> list[Any]:
    statement = select(webhook_attempts).where(
        webhook_attempts.c.merchant_id == merchant_id,
        webhook_attempts.c.endpoint_id == endpoint_id,
    )
    if status is not None:
        statement = statement.where(webhook_attempts.c.status == status)
    if event_id is not None:
        statement = statement.where(webhook_attempts.c.event_id == event_id)
    if before is not None:
        statement = statement.where(webhook_attempts.c.id < before)
    rows = await connection.execute(statement.order_by(webhook_attempts.c.id.desc()).limit(limit))
    return list(rows)


async def get_attempt(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    attempt_id: uuid.UUID,
) -> Any:
    return (
        await connection.execute(
            select(webhook_attempts).where(
                webhook_attempts.c.merchant_id == merchant_id,
                webhook_attempts.c.endpoint_id == endpoint_id,
                webhook_attempts.c.id == attempt_id,
            )
        )
    ).first()


async def next_attempt_numbers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    event_ids: Sequence[uuid.UUID],
) -> dict[uuid.UUID, int]:
    """The number the next attempt of each event at the endpoint gets."""
    if not event_ids:
        return {}
    rows = await connection.execute(
        select(webhook_attempts.c.event_id, func.max(webhook_attempts.c.attempt))
        .where(
            webhook_attempts.c.merchant_id == merchant_id,
            webhook_attempts.c.endpoint_id == endpoint_id,
            webhook_attempts.c.event_id.in_(list(event_ids)),
        )
        .group_by(webhook_attempts.c.event_id)
    )
    found = {row[0]: int(row[1]) + 1 for row in rows}
    return {event_id: found.get(event_id, 1) for event_id in event_ids}


async def failed_events(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    since: datetime,
    until: datetime,
) -> list[Any]:
    """Events created in [since, until) whose delivery to the endpoint failed: an
    attempt failed, none succeeded and none is pending."""
    attempts = webhook_attempts.alias("a")

    def any_attempt(status: str) -> Any:
        return exists().where(
            attempts.c.merchant_id == events.c.merchant_id,
            attempts.c.endpoint_id == endpoint_id,
            attempts.c.event_id == events.c.id,
            attempts.c.status == status,
        )

    rows = await connection.execute(
        select(events.c.id, events.c.type)
        .where(
            events.c.merchant_id == merchant_id,
            # UUIDv7 ids grow with time: the primary key finds the range.
            events.c.id >= uuid7_floor(int(since.timestamp() * 1000)),
            events.c.id < uuid7_floor(int(until.timestamp() * 1000) + 1),
            any_attempt("failed"),
            ~any_attempt("succeeded"),
            ~any_attempt("pending"),
        )
        .order_by(events.c.id)
    )
    return list(rows)


# Postgres: the claim in one statement on the driver (the deliverer's hot path).
# Due attempts of active endpoints, oldest first, skipping those other workers
# hold; at most ``room`` per endpoint (``$4`` unless listed in ``$5``/``$6``,
# endpoints in ``$3`` have none) and ``$7`` in all; leased until ``$8`` and
# returned with their events and endpoints.
CLAIM_POSTGRES = """
WITH candidates AS (
    SELECT a.merchant_id, a.id, a.endpoint_id, a.scheduled_at
    FROM webhook_attempts a
    JOIN webhook_endpoints w ON w.merchant_id = a.merchant_id AND w.id = a.endpoint_id
    WHERE a.status = 'pending' AND a.scheduled_at <= $1
      AND (a.locked_until IS NULL OR a.locked_until < $1)
      AND w.active AND a.endpoint_id <> ALL($3::uuid[])
    ORDER BY a.scheduled_at
    LIMIT $2
    FOR UPDATE OF a SKIP LOCKED
), ranked AS (
    SELECT c.merchant_id, c.id, c.scheduled_at,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.scheduled_at, c.id) AS n,
           COALESCE(r.room, $4) AS room
    FROM candidates c
    LEFT JOIN unnest($5::uuid[], $6::int4[]) AS r(endpoint_id, room)
        ON r.endpoint_id = c.endpoint_id
), chosen AS (
    SELECT merchant_id, id FROM ranked WHERE n <= room ORDER BY scheduled_at, id LIMIT $7
)
UPDATE webhook_attempts a SET locked_until = $8
FROM chosen c, events e, webhook_endpoints w
WHERE a.merchant_id = c.merchant_id AND a.id = c.id
  AND e.merchant_id = a.merchant_id AND e.id = a.event_id
  AND w.merchant_id = a.merchant_id AND w.id = a.endpoint_id
RETURNING a.merchant_id, a.id, a.endpoint_id, a.event_id, a.attempt, a.trigger,
          e.type, e.created_at, e.sequence, e.customer_ref, e.payload, e.actor,
          w.url, w.secret, w.previous_secret, w.previous_secret_expires_at
"""


async def claim_postgres(
    database: Database,
    now: datetime,
    *,
    free: int,
    per_endpoint: int,
    rooms: dict[uuid.UUID, int],
    lease_until: datetime,
) -> list[Any]:
    """One round trip: at most ``free`` due attempts, ``per_endpoint`` per endpoint
    but ``rooms`` for endpoints that have attempts in flight."""
    full = [endpoint for endpoint, room in rooms.items() if room <= 0]
    partial = [(endpoint, room) for endpoint, room in rooms.items() if room > 0]
    async with database.raw_connection() as connection:
        return [
            RecordView(record)
            for record in await connection.fetch(
                CLAIM_POSTGRES,
                now,
                free * 2,
                full,
                per_endpoint,
                [endpoint for endpoint, _ in partial],
                [room for _, room in partial],
                free,
                lease_until,
            )
        ]
