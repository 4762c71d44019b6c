"""The ledger as tests check it: entries counted, invariants verified."""

from __future__ import annotations

from sqlalchemy import func, select

from loyalty.db.tables import customer_balances, customers, ledger_entries
from tests.support.tenant import Tenant

TRANSACTIONS = "/api/v1/public/customers/transactions"


async def ledger_count(tenant: Tenant) -> int:
    async with tenant.database.read() as connection:
        count = (
            await connection.execute(
                select(func.count()).where(ledger_entries.c.merchant_id == tenant.merchant_id)
            )
        ).scalar_one()
    return int(count)


async def check_ledger_invariants(tenant: Tenant, customer_id: str) -> tuple[int, int]:
    """Balance = sum of entries; sequences 1..n; each balance_after follows from the last."""
    async with tenant.database.read() as connection:
        customer_uuid = (
            await connection.execute(
                select(customers.c.id).where(
                    customers.c.merchant_id == tenant.merchant_id,
                    customers.c.external_id == customer_id,
                )
            )
        ).scalar_one()
        balance = (
            await connection.execute(
                select(customer_balances).where(
                    customer_balances.c.merchant_id == tenant.merchant_id,
                    customer_balances.c.customer_id == customer_uuid,
                )
            )
        ).one()
        entries = (
            await connection.execute(
                select(ledger_entries)
                .where(
                    ledger_entries.c.merchant_id == tenant.merchant_id,
                    ledger_entries.c.customer_id == customer_uuid,
                )
                .order_by(ledger_entries.c.sequence)
            )
        ).all()
    running = 0
    for expected_sequence, entry in enumerate(entries, start=1):
        assert entry.sequence == expected_sequence
        running += entry.points_minor
        assert running >= 0
        assert entry.balance_after_minor == running
    assert balance.points_balance_minor == running
    assert balance.last_sequence == len(entries)
    assert balance.lifetime_points_minor == sum(entry.lifetime_delta_minor for entry in entries)
    return running, len(entries)
