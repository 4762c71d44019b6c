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
import calendar
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import structlog
from sqlalchemy import text

from loyalty.customers.refs import CustomerRef
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


# Active customers whose birthday (UTC) is today, not yet rewarded this year, of
# programmes with an active birthday rule (29 February is celebrated on the 28th in
# other years). The writer counts this year's birthday rewards under the lock.
_BIRTHDAYS = """
    SELECT c.merchant_id, c.external_id FROM earn_rules r
    JOIN customers c ON c.merchant_id = r.merchant_id
    WHERE r.type = 'birthday' AND r.active AND c.status = 'active'
      AND c.date_of_birth IS NOT NULL AND {month_day} IN (:today, :also_today)
      AND NOT EXISTS (
          SELECT 1 FROM customer_actions a
          WHERE a.merchant_id = c.merchant_id AND a.customer_id = c.id
            AND a.action = 'birthday' AND a.created_at >= {year_start})
    LIMIT :limit"""


@dataclass(slots=True)
class MaintenanceRun:
    customers: int = 0
    points_expired: float = 0
    pending_released: int = 0
    birthdays_rewarded: int = 0


def _moment(database: Database, value: datetime) -> object:
    if database.is_sqlite:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


async def _due(
    database: Database, sql: str, parameters: dict[str, object]
) -> list[tuple[object, str]]:
    async with database.read() as connection:
        result = await connection.execute(text(sql), {**parameters, "limit": PAGE_SIZE})
        return [(row[0], row[1]) for row in result]


def _birthday_query(database: Database, now: datetime) -> tuple[str, dict[str, object]]:
    today = now.astimezone(UTC).date()
    also = today.strftime("%m-%d")
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        also = "02-29"
    sql = _BIRTHDAYS.format(
        month_day="strftime('%m-%d', c.date_of_birth)"
        if database.is_sqlite
        else "to_char(c.date_of_birth, 'MM-DD')",
        year_start=":year_start" if database.is_sqlite else "CAST(:year_start AS timestamptz)",
    )
    year_start = datetime(today.year, 1, 1, tzinfo=UTC)
    return sql, {
        "today": today.strftime("%m-%d"),
        "also_today": also,
        "year_start": _moment(database, year_start),
    }


async def run_maintenance(database: Database, writer: LedgerWriter) -> MaintenanceRun:
    """Do every customer's due points work once; returns what was done."""
    run = MaintenanceRun()
    queries = dict(
        _DUE, inactive_expired=_INACTIVE["sqlite" if database.is_sqlite else "postgresql"]
    )
    for job, sql in [*queries.items(), ("birthdays_rewarded", "")]:
        done = 0
        for _ in range(PAGES_PER_RUN_MAX):
            now = utc_now()
            if job == "birthdays_rewarded":
                sql, parameters = _birthday_query(database, now)
            else:
                parameters = {"now": _moment(database, now)}
            due = await _due(database, sql, parameters)
            if not due:
                break
            if job == "birthdays_rewarded":
                outcomes = await asyncio.gather(
                    *(
                        service.reward_action(
                            writer,
                            _uuid(merchant_id),
                            CustomerRef(customer_id=external_id),
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
