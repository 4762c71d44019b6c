"""From committed events to deliveries: number a merchant's new events (the
feed's ``sequence``) and, in the same transaction, schedule a first attempt
to each active endpoint whose ``event_types`` match. Run by the deliverers
when woken, and by the feed before it reads, so that the feed works without
a worker and every event that has a sequence has its deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.types import utc_now
from loyalty.events import repository as events
from loyalty.events.types import WEBHOOK_TEST
from loyalty.ids import new_id
from loyalty.webhooks import repository


async def stamp_and_fan_out(
    connection: AsyncConnection, merchant_id: uuid.UUID, now: datetime | None = None
) -> int:
    """Returns how many events were numbered."""
    stamped = await events.stamp(connection, merchant_id)
    if not stamped:
        return 0
    endpoints = await repository.active_endpoints(connection, merchant_id)
    if endpoints:
        moment = now or utc_now()
        wanted = [
            (row.id, None if row.event_types is None else set(msgspec.json.decode(row.event_types)))
            for row in endpoints
        ]
        attempts = [
            {
                "merchant_id": merchant_id,
                "id": new_id(),
                "endpoint_id": endpoint_id,
                "event_id": event.id,
                "event_type": event.type,
                "attempt": 1,
                "trigger": "scheduled",
                "status": "pending",
                "scheduled_at": moment,
            }
            for event in stamped
            for endpoint_id, types in wanted
            if (
                # A test ping goes to the endpoint it names, whatever its types.
                event.subject_id == endpoint_id
                if event.type == WEBHOOK_TEST
                else types is None or event.type in types
            )
        ]
        await repository.insert_attempts(connection, attempts)
    return len(stamped)
