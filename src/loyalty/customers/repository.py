from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import ERASED
from loyalty.dashboard import rollups
from loyalty.db.coalesce import ReadCoalescer
from loyalty.db.dialect import upsert_insert
from loyalty.db.engine import Database
from loyalty.db.raw import RecordView, fetch_row_sqlite, merchant_coalescer
from loyalty.db.tables import customer_balances, customers, orders, program_settings, tiers

# The columns ``customers.service.to_customer`` reads: the customer, its balances,
# its tier's name and the programme's expiry and tier settings.
CUSTOMER_COLUMNS = (
    customers,
    customer_balances.c.points_balance_minor,
    customer_balances.c.pending_points_minor,
    customer_balances.c.lifetime_points_minor,
    customer_balances.c.points_spent_minor,
    customer_balances.c.points_expired_minor,
    customer_balances.c.store_credit_balance_minor,
    customer_balances.c.last_activity_at,
    customer_balances.c.next_expiry_at,
    customer_balances.c.next_expiry_minor,
    customer_balances.c.tier_id,
    customer_balances.c.tier_expires_at,
    tiers.c.name.label("tier_name"),
    program_settings.c.expiry_policy,
    program_settings.c.expiry_days,
    program_settings.c.expiry_changed_at,
    program_settings.c.tier_basis,
    program_settings.c.tier_window_days,
)

CUSTOMER_WITH_BALANCES = (
    select(*CUSTOMER_COLUMNS)
    .join(
        customer_balances,
        (customer_balances.c.merchant_id == customers.c.merchant_id)
        & (customer_balances.c.customer_id == customers.c.id),
    )
    .join(program_settings, program_settings.c.merchant_id == customers.c.merchant_id)
    .outerjoin(
        tiers,
        (tiers.c.merchant_id == customer_balances.c.merchant_id)
        & (tiers.c.id == customer_balances.c.tier_id),
    )
)

# Balances, the next expiry, the tier and the programme's expiry policy.
_COLUMNS = """c.*, b.points_balance_minor, b.pending_points_minor, b.lifetime_points_minor,
       b.points_spent_minor, b.points_expired_minor, b.store_credit_balance_minor,
       b.last_activity_at, b.next_expiry_at, b.next_expiry_minor, b.tier_id,
       b.tier_expires_at, t.name AS tier_name, s.expiry_policy, s.expiry_days,
       s.expiry_changed_at, s.tier_basis, s.tier_window_days"""
_JOINS = """JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
JOIN program_settings s ON s.merchant_id = c.merchant_id
LEFT JOIN tiers t ON t.merchant_id = b.merchant_id AND t.id = b.tier_id"""


# Hot read on Postgres: concurrent look-ups are coalesced into one query.
_CUSTOMERS_POSTGRES = f"""
SELECT {_COLUMNS}
FROM unnest($1::uuid[], $2::text[]) AS r(merchant_id, value)
JOIN customers c ON c.merchant_id = r.merchant_id AND c.{{column}} = r.value
{_JOINS}
"""


_CUSTOMER_SQLITE = f"""
SELECT {_COLUMNS}
FROM customers c
{_JOINS}
WHERE c.merchant_id = ? AND c.{{column}} = ?
"""


def _coalescer(database: Database, column: str) -> ReadCoalescer[tuple[uuid.UUID, str]]:
    return merchant_coalescer(
        database,
        f"customers_by_{column}",
        _CUSTOMERS_POSTGRES.format(column=column),
        key_column=column,
        wrap=RecordView,
    )


async def load_with_balances(
    database: Database, merchant_id: uuid.UUID, *, external_id: str | None, email: str | None
) -> Any | None:
    """A customer and its balances by platform id or email (a hot read)."""
    if database.raw_pool is not None:
        column, value = (
            ("external_id", external_id) if external_id is not None else ("email", email)
        )
        assert value is not None
        return await _coalescer(database, column).get((merchant_id, value))
    column, value = ("external_id", external_id) if external_id is not None else ("email", email)
    return await fetch_row_sqlite(
        database, _CUSTOMER_SQLITE.format(column=column), merchant_id.hex, value
    )


async def find_by_external_id(
    connection: AsyncConnection, merchant_id: uuid.UUID, external_id: str
) -> Any | None:
    statement = CUSTOMER_WITH_BALANCES.where(
        customers.c.merchant_id == merchant_id, customers.c.external_id == external_id
    )
    return (await connection.execute(statement)).one_or_none()


async def find_id_by_email(
    connection: AsyncConnection, merchant_id: uuid.UUID, email: str
) -> tuple[uuid.UUID, str] | None:
    row = (
        await connection.execute(
            select(customers.c.id, customers.c.external_id).where(
                customers.c.merchant_id == merchant_id, customers.c.email == email
            )
        )
    ).one_or_none()
    return (row.id, row.external_id) if row else None


async def find_id_by_external_id(
    connection: AsyncConnection, merchant_id: uuid.UUID, external_id: str
) -> uuid.UUID | None:
    return (
        await connection.execute(
            select(customers.c.id).where(
                customers.c.merchant_id == merchant_id, customers.c.external_id == external_id
            )
        )
    ).scalar_one_or_none()


async def insert_customer(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    external_id: str,
    profile: dict[str, Any],
    now: datetime,
) -> bool:
    """Insert a customer and its zero balances; False if the external id exists."""
    insert = upsert_insert(connection, customers).values(
        merchant_id=merchant_id,
        id=customer_id,
        external_id=external_id,
        status="active",
        created_at=now,
        updated_at=now,
        **profile,
    )
    statement = insert.on_conflict_do_nothing(
        index_elements=[customers.c.merchant_id, customers.c.external_id]
    ).returning(customers.c.id)
    inserted = (await connection.execute(statement)).scalar_one_or_none()
    if inserted is None:
        return False
    await rollups.members_enrolled(connection, merchant_id, 1, now)
    # A programme's entry tier (threshold 0) is reached at enrolment.
    entry_tier = (
        select(tiers.c.id)
        .where(tiers.c.merchant_id == merchant_id, tiers.c.threshold_minor == 0)
        .scalar_subquery()
    )
    await connection.execute(
        customer_balances.insert().values(
            merchant_id=merchant_id, customer_id=customer_id, tier_id=entry_tier, updated_at=now
        )
    )
    return True


async def update_profile(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    external_id: str,
    profile: dict[str, Any],
    now: datetime,
) -> None:
    await connection.execute(
        customers.update()
        .where(customers.c.merchant_id == merchant_id, customers.c.external_id == external_id)
        .values(updated_at=now, **profile)
    )


def profile_values(
    email: str | object | None,
    first_name: str | object | None,
    last_name: str | object | None,
    date_of_birth: date | object | None,
    unset: object,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in (
        ("email", email),
        ("first_name", first_name),
        ("last_name", last_name),
        ("date_of_birth", date_of_birth),
    ):
        if value is not unset:
            values[name] = value
    # The search columns follow the names (lower case, for the prefix search).
    for name in ("first_name", "last_name"):
        if name in values:
            values[f"{name}_search"] = search_key(values[name])
    return values


def search_key(name: str | None) -> str | None:
    """A name as the prefix search compares it: lower case."""
    return None if name is None else name.lower()


async def find_by_id(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Any:
    statement = CUSTOMER_WITH_BALANCES.where(
        customers.c.merchant_id == merchant_id, customers.c.id == customer_id
    )
    if lock:
        statement = statement.with_for_update(of=customers)
    return (await connection.execute(statement)).one()


async def set_status(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    status: str,
    reason: str | None,
    now: datetime,
) -> None:
    await connection.execute(
        customers.update()
        .where(customers.c.merchant_id == merchant_id, customers.c.id == customer_id)
        .values(status=status, status_reason=reason, updated_at=now)
    )


async def find_by_referral_code(
    connection: AsyncConnection, merchant_id: uuid.UUID, code: str
) -> Any | None:
    statement = select(customers.c.id, customers.c.external_id).where(
        customers.c.merchant_id == merchant_id, customers.c.referral_code == code
    )
    return (await connection.execute(statement)).one_or_none()


async def link_referrer(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_id: uuid.UUID,
    referrer_id: uuid.UUID,
) -> bool:
    """Record who referred the customer, unless someone already did or it has ordered."""
    has_orders = (
        select(orders.c.id)
        .where(orders.c.merchant_id == merchant_id, orders.c.customer_id == customer_id)
        .exists()
    )
    result = await connection.execute(
        customers.update()
        .where(
            customers.c.merchant_id == merchant_id,
            customers.c.id == customer_id,
            customers.c.referred_by.is_(None),
            ~has_orders,
        )
        .values(referred_by=referrer_id)
    )
    return bool(result.rowcount)


async def set_referral_code(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID, code: str
) -> None:
    await connection.execute(
        customers.update()
        .where(
            customers.c.merchant_id == merchant_id,
            customers.c.id == customer_id,
            customers.c.referral_code.is_(None),
            customers.c.status != ERASED,
        )
        .values(referral_code=code)
    )


async def referral_state(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> Any:
    referrer = customers.alias("referrer")
    statement = (
        select(
            customers.c.status,
            customers.c.referral_code,
            customers.c.referred_completed,
            customers.c.referral_completed_at,
            referrer.c.external_id.label("referred_by"),
        )
        .outerjoin(
            referrer,
            (referrer.c.merchant_id == customers.c.merchant_id)
            & (referrer.c.id == customers.c.referred_by),
        )
        .where(customers.c.merchant_id == merchant_id, customers.c.id == customer_id)
    )
    return (await connection.execute(statement)).one()


async def pending_referrer(
    connection: AsyncConnection, merchant_id: uuid.UUID, external_id: str
) -> uuid.UUID | None:
    """The UUID of whoever referred this customer, while the referral is open (an
    erased referrer too: the referral completes for the friend, anonymously)."""
    statement = select(customers.c.referred_by).where(
        customers.c.merchant_id == merchant_id,
        customers.c.external_id == external_id,
        customers.c.referral_completed_at.is_(None),
    )
    found: uuid.UUID | None = (await connection.execute(statement)).scalar_one_or_none()
    return found
