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
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

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
        select(webhook_endpoints.c.id, webhook_endpoints.c.event_types).where(
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


async def endpoint_secrets(
    connection: AsyncConnection, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> list[Any]:
    """URL, secrets and state of endpoints by (merchant_id, id)."""
    rows = await connection.execute(
        select(
            webhook_endpoints.c.merchant_id,
            webhook_endpoints.c.id,
            webhook_endpoints.c.url,
            webhook_endpoints.c.active,
            webhook_endpoints.c.secret,
            webhook_endpoints.c.previous_secret,
            webhook_endpoints.c.previous_secret_expires_at,
        ).where(tuple_(webhook_endpoints.c.merchant_id, webhook_endpoints.c.id).in_(list(keys)))
    )
    return list(rows)


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
    """Due pending attempts, oldest first, locked (others skip them) until the commit."""
    if connection.dialect.name == "postgresql":
        # Planned for these values each time: a generic plan (the driver prepares
        # statements) may scan every pending attempt instead of the due index.
        await connection.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
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


async def lease(
    connection: AsyncConnection,
    keys: Sequence[tuple[uuid.UUID, uuid.UUID]],
    until: datetime,
) -> list[Any]:
    """Hold the attempts until ``until`` and return them with their events."""
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
        )
        .join(
            events,
            and_(
                events.c.merchant_id == webhook_attempts.c.merchant_id,
                events.c.id == webhook_attempts.c.event_id,
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


async def release(connection: AsyncConnection, keys: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Give leased attempts back (a stopping worker): due again at once."""
    if keys:
        await connection.execute(
            update(webhook_attempts)
            .where(tuple_(webhook_attempts.c.merchant_id, webhook_attempts.c.id).in_(list(keys)))
            .values(locked_until=None)
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
