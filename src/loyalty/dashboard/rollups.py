"""Adding to the daily rollups outside the ledger's batches (enrolments).

The ledger's stores add to ``daily_rollups`` in their own write statement;
whoever else writes something the dashboard counts (a customer enrolled by
the API or an import) adds to it here, in the same transaction.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.dialect import upsert_insert
from loyalty.db.tables import daily_rollups
from loyalty.ledger.engine.changes import MEMBERS_METRIC, ROLLUP_SHARDS


async def add(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    metric: str,
    *,
    plus: int = 0,
    minus: int = 0,
    count: int = 1,
    now: datetime,
) -> None:
    """Add to the merchant's rollup of ``metric`` on ``now``'s day (UTC)."""
    shard = random.randrange(ROLLUP_SHARDS) if connection.dialect.name == "postgresql" else 0
    insert = upsert_insert(connection, daily_rollups).values(
        merchant_id=merchant_id,
        day=now.astimezone(UTC).date(),
        metric=metric,
        shard=shard,
        plus_minor=plus,
        minus_minor=minus,
        count=count,
    )
    await connection.execute(
        insert.on_conflict_do_update(
            index_elements=[
                daily_rollups.c.merchant_id,
                daily_rollups.c.day,
                daily_rollups.c.metric,
                daily_rollups.c.shard,
            ],
            set_={
                "plus_minor": daily_rollups.c.plus_minor + insert.excluded.plus_minor,
                "minus_minor": daily_rollups.c.minus_minor + insert.excluded.minus_minor,
                "count": daily_rollups.c.count + insert.excluded.count,
            },
        )
    )


async def members_enrolled(
    connection: AsyncConnection, merchant_id: uuid.UUID, enrolled: int, now: datetime
) -> None:
    if enrolled:
        await add(connection, merchant_id, MEMBERS_METRIC, plus=enrolled, count=enrolled, now=now)
