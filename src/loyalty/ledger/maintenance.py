"""The scheduler's points work: release due holds, expire points, recheck tiers,
reward birthdays.

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

import msgspec
import structlog

from loyalty.customers.refs import CustomerRef
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ledger import repository, service
from loyalty.ledger.writer import LedgerWriter

log = structlog.get_logger(__name__)

PAGE_SIZE = 500
# A run stops after this many pages; the next run carries on.
PAGES_PER_RUN_MAX = 200


@dataclass(slots=True)
class MaintenanceRun:
    customers: int = 0
    points_expired: float = 0
    pending_released: int = 0
    birthdays_rewarded: int = 0


async def run_maintenance(database: Database, writer: LedgerWriter) -> MaintenanceRun:
    """Do every customer's due points work once; returns what was done."""
    run = MaintenanceRun()
    for job in (*repository.DUE_WORK, "birthdays_rewarded"):
        done = 0
        for _ in range(PAGES_PER_RUN_MAX):
            async with database.read() as connection:
                due = await repository.due_customers(
                    connection, job, utc_now(), sqlite=database.is_sqlite, limit=PAGE_SIZE
                )
            if not due:
                break
            if job == "birthdays_rewarded":
                outcomes = await asyncio.gather(
                    *(
                        service.reward_action(
                            writer,
                            _uuid(merchant_id),
                            CustomerRef(customer_id=str(external_id)),
                            "birthday",
                            idempotency_key=None,
                            request_fingerprint="",
                        )
                        for merchant_id, external_id in due
                    )
                )
                run.birthdays_rewarded += sum(o.status_code == 201 for o in outcomes)
            else:
                outcomes = await asyncio.gather(
                    *(
                        service.maintain_customer(writer, _uuid(merchant_id), _uuid(customer_id))
                        for merchant_id, customer_id in due
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
