"""Scheduled jobs: one run of every due job, and the loop that repeats it.

``loyalty worker`` runs the loop in its own process; on the embedded default
(SQLite) ``loyalty serve`` also runs it in-process, so a one-process shop
needs nothing else. Every job is idempotent and claims its rows (``FOR
UPDATE SKIP LOCKED`` on Postgres, the write lock on SQLite), so several
loops at once never do a piece of work twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass

import structlog

from loyalty.db.engine import Database
from loyalty.idempotency import service as idempotency_service
from loyalty.ledger.maintenance import run_maintenance
from loyalty.ledger.writer import LedgerWriter
from loyalty.rewards import service as rewards_service
from loyalty.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JobsRun:
    rewards_expired: int
    idempotency_records_purged: int
    customers_maintained: int = 0
    points_expired: float = 0
    pending_released: int = 0
    birthdays_rewarded: int = 0


async def run_due_jobs(database: Database, settings: Settings, writer: LedgerWriter) -> JobsRun:
    """Release due pending points, expire points, recheck tiers (through ``writer``),
    expire discount codes, purge old idempotency records."""
    points = await run_maintenance(database, writer)
    expired = await rewards_service.expire_due_rewards(database)
    purged = await idempotency_service.purge_expired(database, settings.idempotency_retention_days)
    run = JobsRun(
        rewards_expired=expired,
        idempotency_records_purged=purged,
        customers_maintained=points.customers,
        points_expired=points.points_expired,
        pending_released=points.pending_released,
        birthdays_rewarded=points.birthdays_rewarded,
    )
    log.info("jobs_run", **asdict(run))
    return run


class Scheduler:
    """Runs the due jobs every ``interval_seconds`` until stopped."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        writer: LedgerWriter,
        interval_seconds: float,
    ) -> None:
        self.database = database
        self.settings = settings
        self.writer = writer
        self.interval_seconds = interval_seconds
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await run_due_jobs(self.database, self.settings, self.writer)
                self.runs += 1
            except Exception:  # a failed run is logged and tried again next time
                log.exception("jobs_run_failed")
            await asyncio.sleep(self.interval_seconds)


def scheduler_enabled(settings: Settings, database: Database) -> bool:
    """``auto`` runs the jobs in the API process on SQLite only."""
    if settings.scheduler == "auto":
        return database.is_sqlite
    return settings.scheduler == "on"
