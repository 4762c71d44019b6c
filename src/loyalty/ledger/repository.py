"""Ledger reads. Writes are the batching writer's (``loyalty.ledger.storage``)."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import customers, ledger_entries, pending_credits


async def list_entries(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    before_sequence: int | None,
    limit: int,
) -> list[Any]:
    statement = select(ledger_entries).where(
        ledger_entries.c.merchant_id == merchant_id,
        ledger_entries.c.customer_id == customer_id,
    )
    if before_sequence is not None:
        statement = statement.where(ledger_entries.c.sequence < before_sequence)
    statement = statement.order_by(ledger_entries.c.sequence.desc()).limit(limit)
    return list(await connection.execute(statement))


async def list_pending(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    status: str | None,
    before_id: uuid.UUID | None,
    limit: int,
) -> list[Any]:
    """A customer's pending credits, newest first (ids are time-ordered UUIDv7)."""
    statement = select(pending_credits).where(
        pending_credits.c.merchant_id == merchant_id,
        pending_credits.c.customer_id == customer_id,
    )
    if status is not None:
        statement = statement.where(pending_credits.c.status == status)
    if before_id is not None:
        statement = statement.where(pending_credits.c.id < before_id)
    statement = statement.order_by(pending_credits.c.id.desc()).limit(limit)
    return list(await connection.execute(statement))


async def pending_owner(
    connection: AsyncConnection, merchant_id: uuid.UUID, pending_id: uuid.UUID
) -> str | None:
    """The platform id of the customer a pending credit belongs to."""
    statement = (
        select(customers.c.external_id)
        .join(
            pending_credits,
            (pending_credits.c.merchant_id == customers.c.merchant_id)
            & (pending_credits.c.customer_id == customers.c.id),
        )
        .where(pending_credits.c.merchant_id == merchant_id, pending_credits.c.id == pending_id)
    )
    found: str | None = (await connection.execute(statement)).scalar_one_or_none()
    return found


# The scheduler's work: customers with something due, a bounded page at a time, by
# UUID (erased customers, which have no platform id, are maintained too).
_DUE = {
    "pending_released": """
        SELECT DISTINCT p.merchant_id, p.customer_id FROM pending_credits p
        WHERE p.status = 'pending' AND p.available_at <= :now
        LIMIT :limit""",
    "lots_expired": """
        SELECT DISTINCT l.merchant_id, l.customer_id FROM point_lots l
        WHERE l.expires_at <= :now
        LIMIT :limit""",
    "tiers_rechecked": """
        SELECT b.merchant_id, b.customer_id FROM customer_balances b
        WHERE b.tier_recheck_at <= :now
        LIMIT :limit""",
}
# Whole balances idle for the programme's days (counted from the policy change at
# the earliest); the writer re-checks each one exactly. On Postgres per programme
# (LATERAL) and in two ranges of ix_customer_balances_inactivity (never active, idle
# since before the deadline): as one join with an OR the planner reads every balance.
_INACTIVE = {
    "postgresql": """
        SELECT s.merchant_id, b.customer_id FROM program_settings s
        CROSS JOIN LATERAL (
            (SELECT i.customer_id FROM customer_balances i
             WHERE i.merchant_id = s.merchant_id AND i.points_balance_minor > 0
               AND i.last_activity_at IS NULL
             LIMIT :limit)
            UNION ALL
            (SELECT i.customer_id FROM customer_balances i
             WHERE i.merchant_id = s.merchant_id AND i.points_balance_minor > 0
               AND i.last_activity_at
                   <= CAST(:now AS timestamptz) - make_interval(days => s.expiry_days)
             ORDER BY i.last_activity_at
             LIMIT :limit)
        ) b
        WHERE s.expiry_policy = 'inactivity'
          AND s.expiry_changed_at
              <= CAST(:now AS timestamptz) - make_interval(days => s.expiry_days)
        LIMIT :limit""",
    "sqlite": """
        SELECT b.merchant_id, b.customer_id FROM program_settings s
        JOIN customer_balances b ON b.merchant_id = s.merchant_id
        WHERE s.expiry_policy = 'inactivity' AND b.points_balance_minor > 0
          AND s.expiry_changed_at <= datetime(:now, '-' || s.expiry_days || ' days')
          AND (b.last_activity_at IS NULL
               OR b.last_activity_at <= datetime(:now, '-' || s.expiry_days || ' days'))
        LIMIT :limit""",
}


# Active customers whose birthday (UTC) is today, not yet rewarded this year, of
# programmes with an active birthday rule (29 February is celebrated on the 28th in
# other years). The writer counts this year's birthday rewards under the lock.
# The month and day are ix_customers_birthday's expression (migration 0014), written
# exactly as indexed on each database: to_char, which Postgres cannot index, is not
# used; MMDD as a number there, 'MM-DD' on SQLite.
BIRTHDAY_KEY = {
    "postgresql": (
        "(EXTRACT(MONTH FROM c.date_of_birth) * 100 + EXTRACT(DAY FROM c.date_of_birth))"
    ),
    "sqlite": "strftime('%m-%d', c.date_of_birth)",
}
_BIRTHDAYS = """
    SELECT c.merchant_id, c.external_id FROM earn_rules r
    JOIN customers c ON c.merchant_id = r.merchant_id
    WHERE r.type = 'birthday' AND r.active AND c.status = 'active'
      AND c.date_of_birth IS NOT NULL AND {month_day} IN ({today}, {also_today})
      AND NOT EXISTS (
          SELECT 1 FROM customer_actions a
          WHERE a.merchant_id = c.merchant_id AND a.customer_id = c.id
            AND a.action = 'birthday' AND a.created_at >= {year_start})
    LIMIT :limit"""


def _moment(sqlite: bool, value: datetime) -> object:
    if sqlite:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def _birthday_query(sqlite: bool, now: datetime) -> tuple[str, dict[str, object]]:
    today = now.astimezone(UTC).date()
    also = (today.month, today.day)
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        also = (2, 29)
    days: list[object] = [
        f"{month:02d}-{day:02d}" if sqlite else month * 100 + day
        for month, day in ((today.month, today.day), also)
    ]
    sql = _BIRTHDAYS.format(
        month_day=BIRTHDAY_KEY["sqlite" if sqlite else "postgresql"],
        today=":today" if sqlite else "CAST(:today AS integer)",
        also_today=":also_today" if sqlite else "CAST(:also_today AS integer)",
        year_start=":year_start" if sqlite else "CAST(:year_start AS timestamptz)",
    )
    year_start = datetime(today.year, 1, 1, tzinfo=UTC)
    return sql, {
        "today": days[0],
        "also_today": days[1],
        "year_start": _moment(sqlite, year_start),
    }


DUE_WORK = (*_DUE, "inactive_expired")


async def due_customers(
    connection: AsyncConnection, job: str, now: datetime, *, sqlite: bool, limit: int
) -> list[tuple[object, object]]:
    """(merchant_id, customer) of up to ``limit`` customers ``job`` has work for: the
    customer's UUID, or its platform id for ``birthdays_rewarded``."""
    if job == "birthdays_rewarded":
        sql, parameters = _birthday_query(sqlite, now)
    else:
        sql = (
            _INACTIVE["sqlite" if sqlite else "postgresql"]
            if job == "inactive_expired"
            else _DUE[job]
        )
        parameters = {"now": _moment(sqlite, now)}
    result = await connection.execute(text(sql), {**parameters, "limit": limit})
    return [(row[0], row[1]) for row in result]
