"""The events outbox: written in the same transaction as the change it reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import events
from loyalty.ids import new_id

_encoder = msgspec.json.Encoder()


async def record(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    event_type: str,
    subject_id: uuid.UUID | None,
    payload: dict[str, Any],
    now: datetime,
) -> uuid.UUID:
    event_id = new_id()
    await connection.execute(
        events.insert().values(
            merchant_id=merchant_id,
            id=event_id,
            type=event_type,
            subject_id=subject_id,
            payload=_encoder.encode(payload).decode(),
            created_at=now,
        )
    )
    return event_id
