"""``loyalty_webhook_backlog``: deliveries due and not made, read from the database.

Read when ``/metrics`` is scraped and by the deliverer's loop, at most every
``metrics.BACKLOG_REFRESH_SECONDS`` per process: one count on the partial
index of pending attempts (``ix_webhook_attempts_due``).
"""

from __future__ import annotations

import asyncio
import contextlib

from loyalty import metrics
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.webhooks import repository


async def count(database: Database) -> int:
    async with database.read() as connection:
        return await repository.count_due(connection, utc_now())


async def refresh(database: Database) -> None:
    await metrics.refresh_webhook_backlog(lambda: count(database))


async def refresh_forever(database: Database, stop: asyncio.Event) -> None:
    """The worker's backlog, kept fresh for its own ``/metrics`` listener, until
    ``stop`` is set (a flag, not a cancellation: a read cut short by a cancellation
    can fail with another error, which the refresh logs and would carry on from)."""
    while not stop.is_set():
        await refresh(database)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), metrics.BACKLOG_REFRESH_SECONDS)
