"""Many clients on one customer: never overdrawn, every success recorded once."""

from __future__ import annotations

import asyncio
import random

from tests.support.ledger import check_ledger_invariants, ledger_count
from tests.support.tenant import Tenant

CLIENTS = 64


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
