"""The events domain's scheduled work: deleting events past their retention."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.types import utc_now
from loyalty.events import repository
from loyalty.scheduling import Job, JobContext

PURGE_BATCH = 5000


async def _purge(connection: AsyncConnection, *, merchant_id: uuid.UUID, cutoff: datetime) -> int:
    return await repository.purge_before(connection, merchant_id, cutoff, PURGE_BATCH)


async def purge(context: JobContext) -> Mapping[str, float]:
    """Delete numbered events older than LOYALTY_EVENT_RETENTION_DAYS (their
    delivery attempts go with them), in bounded transactions."""
    database = context.database
    cutoff = utc_now() - timedelta(days=context.settings.event_retention_days)
    async with database.read() as connection:
        merchant_ids = await repository.merchant_ids(connection)
    total = 0
    for merchant_id in merchant_ids:
        while True:
            deleted = await database.transaction(
                partial(_purge, merchant_id=merchant_id, cutoff=cutoff)
            )
            total += deleted
            if deleted < PURGE_BATCH:
                break
    return {"events_purged": total}


JOBS = (Job("events_purge", timedelta(hours=1), purge, summary="purged {events_purged} event(s)"),)
