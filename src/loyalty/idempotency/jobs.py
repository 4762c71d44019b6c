"""The idempotency domain's scheduled work: purging records past their retention."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from loyalty.idempotency import service
from loyalty.scheduling import Job, JobContext


async def purge(context: JobContext) -> Mapping[str, float]:
    retention_days = context.settings.idempotency_retention_days
    return {
        "idempotency_records_purged": await service.purge_expired(context.database, retention_days)
    }


JOBS = (
    # Records are kept for days: an hourly purge keeps the table bounded.
    Job(
        "idempotency_purge",
        timedelta(hours=1),
        purge,
        summary="purged {idempotency_records_purged} idempotency record(s)",
    ),
)
