"""Many clients on one customer: never overdrawn, every success recorded once."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import select

from loyalty.db.tables import customer_balances, customers, ledger_entries
from tests.conftest import Tenant
from tests.test_transactions import ledger_count

CLIENTS = 64


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


async def test_64_concurrent_debits_never_overdraw(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 40)).status_code == 201
    responses = await asyncio.gather(
        *(tenant.adjust(unique_id, -1, f"debit {index}") for index in range(CLIENTS))
    )
    statuses = [response.status_code for response in responses]
    succeeded = statuses.count(201)
    rejected = [r.json()["error"]["code"] for r in responses if r.status_code != 201]
    assert succeeded == 40
    assert rejected == ["insufficient_points"] * (CLIENTS - 40)
    balance_minor, entry_count = await check_ledger_invariants(tenant, unique_id)
    assert balance_minor == 0
    assert entry_count == 1 + succeeded
    assert await ledger_count(tenant) == 1 + succeeded
    print(
        f"\n{CLIENTS} concurrent debits of 1 against a balance of 40: {succeeded} succeeded, "
        f"{len(rejected)} insufficient_points, final balance {balance_minor // 100}, "
        f"ledger entries {entry_count} (1 credit + {succeeded} debits)"
    )


async def test_mixed_concurrent_movements_stay_consistent(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    rng = random.Random(7)
    amounts = [rng.choice([5, 10, -3, -7, -20, 15]) for _ in range(CLIENTS * 2)]
    responses = await asyncio.gather(*(tenant.adjust(unique_id, amount) for amount in amounts))
    accepted = [
        amount
        for amount, response in zip(amounts, responses, strict=True)
        if response.status_code == 201
    ]
    for response in responses:
        assert response.status_code in (201, 422), response.text
    balance_minor, entry_count = await check_ledger_invariants(tenant, unique_id)
    assert entry_count == len(accepted)
    assert balance_minor == sum(accepted) * 100
    assert (await tenant.customer(unique_id))["points_balance"] == sum(accepted)
