"""A Jepsen-style bank workload: concurrent writers over 100 customers while
readers check that everything they see is a state the ledger really had.

- Every balance a reader sees is the ``points_balance`` after some entry of
  that customer (or the opening 0): no torn or uncommitted read.
- Every activity-log page is consistent on its own: its entries' sequences
  are contiguous and each ``points_balance`` follows from the one before.
- At the end: each customer's ledger invariants hold, and the total of all
  balances is exactly the total of the accepted movements.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

from tests.support.ledger import check_ledger_invariants
from tests.support.tenant import Tenant

CUSTOMERS = 100
WRITERS = 16
MOVES_PER_WRITER = 40
READERS = 4


async def test_bank_workload(tenant: Tenant, unique_id: str) -> None:
    ids = [f"{unique_id}-{n}" for n in range(CUSTOMERS)]
    for customer_id in ids:
        await tenant.enrol(customer_id)
    accepted_total = 0
    writers_done = asyncio.Event()
    observed_balances: dict[str, set[float]] = {customer_id: set() for customer_id in ids}
    pages_checked = 0

    async def writer(seed: int) -> None:
        nonlocal accepted_total
        rng = random.Random(seed)
        for _ in range(MOVES_PER_WRITER):
            points = rng.choice([25, 10, -5, -15, -40])
            response = await tenant.adjust(rng.choice(ids), points)
            assert response.status_code in (201, 422), response.text
            if response.status_code == 201:
                accepted_total += points
            else:
                assert response.json()["error"]["code"] == "insufficient_points"

    async def reader(seed: int) -> None:
        nonlocal pages_checked
        rng = random.Random(seed)
        while not writers_done.is_set():
            customer_id = rng.choice(ids)
            customer = await tenant.customer(customer_id)
            observed_balances[customer_id].add(customer["points_balance"])
            page = await tenant.get(
                "/api/v1/public/customers/transactions",
                params={"customer_id": customer_id, "limit": 100},
            )
            check_page(page.json()["data"])
            pages_checked += 1

    async def writers() -> None:
        await asyncio.gather(*(writer(seed) for seed in range(WRITERS)))
        writers_done.set()

    await asyncio.gather(writers(), *(reader(1000 + seed) for seed in range(READERS)))

    final_total = 0
    for customer_id in ids:
        balance_minor, _ = await check_ledger_invariants(tenant, customer_id)
        final_total += balance_minor
        states = {0.0} | {entry["points_balance"] for entry in await full_log(tenant, customer_id)}
        assert observed_balances[customer_id] <= states, customer_id
    assert final_total == accepted_total * 100
    print(
        f"\nbank: {WRITERS * MOVES_PER_WRITER} movements over {CUSTOMERS} customers, "
        f"{pages_checked} log pages and {sum(map(len, observed_balances.values()))} distinct "
        f"balances read concurrently, all consistent; total {accepted_total} conserved"
    )


def check_page(entries: list[dict[str, Any]]) -> None:
    """Newest first: each entry's balance is the next older one's plus its points."""
    for newer, older in itertools.pairwise(entries):
        assert newer["sequence"] == older["sequence"] + 1
        assert newer["points_balance"] == older["points_balance"] + newer["points"]


async def full_log(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"customer_id": customer_id, "limit": 100}
    while True:
        page = (await tenant.get("/api/v1/public/customers/transactions", params=params)).json()
        entries += page["data"]
        if page["next_cursor"] is None:
            return entries
        params["cursor"] = page["next_cursor"]
