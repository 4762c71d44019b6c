"""The configuration changes (SQL)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.actors import current_actor
from loyalty.db.tables import config_changes
from loyalty.ids import new_id

SUBJECT_TYPE_CHARS_MAX = 32
SUBJECT_ID_CHARS_MAX = 64
ACTION_CHARS_MAX = 32


async def record_change(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    subject_type: str,
    subject_id: uuid.UUID | str | None,
    action: str,
    summary: str,
    now: datetime,
) -> uuid.UUID:
    """One change, by the current actor, in ``connection``'s transaction (it commits
    or rolls back with the change itself). Returns the change's id."""
    change_id = new_id()
    await connection.execute(
        insert(config_changes).values(
            merchant_id=merchant_id,
            id=change_id,
            actor=current_actor(),
            subject_type=subject_type[:SUBJECT_TYPE_CHARS_MAX],
            subject_id=None if subject_id is None else str(subject_id)[:SUBJECT_ID_CHARS_MAX],
            action=action[:ACTION_CHARS_MAX],
            summary=summary,
            created_at=now,
        )
    )
    return change_id


async def list_changes(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    limit: int,
    before_id: uuid.UUID | None = None,
    subject_type: str | None = None,
) -> list[Any]:
    """The merchant's changes, newest first (ids are time-ordered UUIDv7)."""
    statement = select(
        config_changes.c.id,
        config_changes.c.actor,
        config_changes.c.subject_type,
        config_changes.c.subject_id,
        config_changes.c.action,
        config_changes.c.summary,
        config_changes.c.created_at,
    ).where(config_changes.c.merchant_id == merchant_id)
    if before_id is not None:
        statement = statement.where(config_changes.c.id < before_id)
    if subject_type is not None:
        statement = statement.where(config_changes.c.subject_type == subject_type)
    rows = await connection.execute(statement.order_by(config_changes.c.id.desc()).limit(limit))
    return list(rows)
