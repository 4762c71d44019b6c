"""The scheduler's points work: release due holds, expire points, recheck tiers.

Finding work is a plain read (bounded pages of customers with something due);
doing it is a ``Maintain`` movement per customer through the ledger writer,
which decides under the customer's balance lock what is still due. Two
workers that pick the same customer therefore never expire or release
anything twice: the second finds nothing left to do. A customer is picked
again only while something is still due, so each run ends.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog
from sqlalchemy import text

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ledger import service
from loyalty.ledger.writer import LedgerWriter

log = structlog.get_logger(__name__)

PAGE_SIZE = 500
# A run stops after this many pages; the next run carries on.
PAGES_PER_RUN_MAX = 200

_DUE = {
    "pending_released": """
        SELECT DISTINCT p.merchant_id, c.external_id FROM pending_credits p
        JOIN customers c ON c.merchant_id = p.merchant_id AND c.id = p.customer_id
        WHERE p.status = 'pending' AND p.available_at <= :now
        LIMIT :limit""",
    "lots_expired": """
        SELECT DISTINCT l.merchant_id, c.external_id FROM point_lots l
        JOIN customers c ON c.merchant_id = l.merchant_id AND c.id = l.customer_id
        WHERE l.expires_at <= :now
        LIMIT :limit""",
    "tiers_rechecked": """
        SELECT b.merchant_id, c.external_id FROM customer_balances b
        JOIN customers c ON c.merchant_id = b.merchant_id AND c.id = b.customer_id
        WHERE b.tier_recheck_at <= :now
        LIMIT :limit""",
}
# Whole balances idle for the programme's days (counted from the policy change at
# the earliest); the writer re-checks each one exactly.
_INACTIVE = {
    "postgresql": """
        SELECT b.merchant_id, c.external_id FROM program_settings s
        JOIN customer_balances b ON b.merchant_id = s.merchant_id
        JOIN customers c ON c.merchant_id = b.merchant_id AND c.id = b.customer_id
        WHERE s.expiry_policy = 'inactivity' AND b.points_balance_minor > 0
          AND s.expiry_changed_at
              <= CAST(:now AS timestamptz) - make_interval(days => s.expiry_days)
          AND (b.last_activity_at IS NULL OR b.last_activity_at
               <= CAST(:now AS timestamptz) - make_interval(days => s.expiry_days))
        LIMIT :limit""",
    "sqlite": """
        SELECT b.merchant_id, c.external_id FROM program_settings s
        JOIN customer_balances b ON b.merchant_id = s.merchant_id
        JOIN customers c ON c.merchant_id = b.merchant_id AND c.id = b.customer_id
        WHERE s.expiry_policy = 'inactivity' AND b.points_balance_minor > 0
          AND s.expiry_changed_at <= datetime(:now, '-' || s.expiry_days || ' days')
          AND (b.last_activity_at IS NULL
               OR b.last_activity_at <= datetime(:now, '-' || s.expiry_days || ' days'))
        LIMIT :limit""",
}


@dataclass(slots=True)
class MaintenanceRun:
    customers: int = 0
    points_expired: float = 0
    pending_released: int = 0


async def _due(database: Database, sql: str, now: datetime) -> list[tuple[object, str]]:
    moment: object = now
    if database.is_sqlite:
        moment = now.replace(tzinfo=None).isoformat(" ", "microseconds")
    async with database.read() as connection:
        result = await connection.execute(text(sql), {"now": moment, "limit": PAGE_SIZE})
        return [(row[0], row[1]) for row in result]


async def run_maintenance(database: Database, writer: LedgerWriter) -> MaintenanceRun:
    """Do every customer's due points work once; returns what was done."""
    run = MaintenanceRun()
    queries = dict(
        _DUE, inactive_expired=_INACTIVE["sqlite" if database.is_sqlite else "postgresql"]
    )
    for job, sql in queries.items():
        done = 0
        for _ in range(PAGES_PER_RUN_MAX):
            due = await _due(database, sql, utc_now())
            if not due:
                break
            outcomes = await asyncio.gather(
                *(
                    service.maintain_customer(writer, _uuid(merchant_id), external_id)
                    for merchant_id, external_id in due
                )
            )
            for outcome in outcomes:
                if outcome.status_code == 200:
                    data = msgspec.json.decode(outcome.body)["data"]
                    run.points_expired += data["points_expired"]
                    run.pending_released += data["pending_released"]
            done += len(due)
            run.customers += len(due)
            log.info("maintenance_progress", job=job, customers=done)
            if len(due) < PAGE_SIZE:
                break
    return run


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
