"""Points transfers between two customers (both databases)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from loyalty.customers.refs import CustomerRef
from loyalty.db.engine import Database
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.operations.transfers import TransferPoints
from loyalty.ledger.writer import LedgerWriter
from tests.support.ledger import check_ledger_invariants
from tests.support.tenant import Tenant, event_types

PATH = "/api/v1/public/customers/transfers"


async def transfer(
    tenant: Tenant, source: str, target: str, points: Any, **extra: Any
) -> httpx.Response:
    body = {"from_customer_id": source, "to_customer_id": target, "points": points, **extra}
    return await tenant.post(PATH, json=body)


async def funded_pair(tenant: Tenant, unique_id: str, points: int) -> tuple[str, str]:
    source, target = f"{unique_id}-a", f"{unique_id}-b"
    await tenant.enrol(source, email=f"{unique_id}-a@example.com")
    await tenant.enrol(target, email=f"{unique_id}-b@example.com")
    assert (await tenant.adjust(source, points)).status_code == 201
    return source, target


async def test_a_transfer_is_one_debit_and_one_credit(tenant: Tenant, unique_id: str) -> None:
    source, target = await funded_pair(tenant, unique_id, 100)
    response = await transfer(tenant, source, target, 30)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["transfer_id"]
    debit, credit = data["from"], data["to"]
    assert (debit["points"], debit["type"], debit["kind"]) == (-30, "debit", "transfer")
    assert (credit["points"], credit["type"], credit["kind"]) == (30, "credit", "transfer")
    assert debit["description"] == f"Points transferred to {target}"
    assert credit["description"] == f"Points transferred from {source}"
    assert (debit["points_balance"], credit["points_balance"]) == (70, 30)
    assert debit["apply_to_lifetime"] is False
    assert credit["apply_to_lifetime"] is False
    a, b = await tenant.customer(source), await tenant.customer(target)
    assert (a["points_balance"], b["points_balance"]) == (70, 30)
    # A transfer is not earning: lifetime stays with the customer who earned the points.
    assert (a["lifetime_points"], b["lifetime_points"]) == (100, 0)
    types = await event_types(tenant)
    assert types.count("transaction.created") == 3  # the funding credit and both sides
    assert "points.transferred" in types
    for customer_id in (source, target):
        await check_ledger_invariants(tenant, customer_id)


async def test_customers_named_by_email_and_lifetime_moved_when_asked(
    tenant: Tenant, unique_id: str
) -> None:
    source, target = await funded_pair(tenant, unique_id, 50)
    response = await tenant.post(
        PATH,
        json={
            "from_customer_email": f"{unique_id}-A@example.com",
            "to_customer_email": f"{unique_id}-b@example.com",
            "points": 50,
            "description": "Merged duplicate account",
            "apply_to_lifetime": True,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["to"]["description"] == "Merged duplicate account"
    a, b = await tenant.customer(source), await tenant.customer(target)
    assert (a["points_balance"], b["points_balance"]) == (0, 50)
    assert (a["lifetime_points"], b["lifetime_points"]) == (0, 50)


async def test_a_retried_transfer_moves_points_once(tenant: Tenant, unique_id: str) -> None:
    source, target = await funded_pair(tenant, unique_id, 100)
    body = {"from_customer_id": source, "to_customer_id": target, "points": 10}
    headers = {"Idempotency-Key": f"transfer-{unique_id}"}
    first = await tenant.post(PATH, json=body, headers=headers)
    second = await tenant.post(PATH, json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert (await tenant.customer(target))["points_balance"] == 10


async def test_bad_transfers_are_refused_and_move_nothing(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    source, target = await funded_pair(tenant, unique_id, 20)
    foreign = f"{unique_id}-f"
    await other_tenant.enrol(foreign)

    async def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code
        return error

    error = await refused(await transfer(tenant, source, source, 5), 422, "validation_error")
    assert error["details"][0]["field"] == "to_customer_id"
    same_by_email = await tenant.post(
        PATH,
        json={"from_customer_id": source, "to_customer_email": f"{unique_id}-a@example.com",
              "points": 5},
    )  # fmt: skip
    error = await refused(same_by_email, 422, "validation_error")
    assert error["details"][0]["field"] == "to_customer_id"
    for points in (0, -5, 1.5):
        error = await refused(
            await transfer(tenant, source, target, points), 422, "validation_error"
        )
        assert error["details"][0]["field"] == "points"
    await refused(await transfer(tenant, source, "nobody", 5), 404, "customer_not_found")
    await refused(await transfer(tenant, "nobody", target, 5), 404, "customer_not_found")
    await refused(await transfer(tenant, source, foreign, 5), 404, "customer_not_found")
    await refused(await transfer(tenant, source, target, 21), 422, "insufficient_points")
    missing = await tenant.post(PATH, json={"to_customer_id": target, "points": 5})
    error = await refused(missing, 422, "validation_error")
    assert error["details"][0]["field"] == "from_customer_id"
    a, b = await tenant.customer(source), await tenant.customer(target)
    assert (a["points_balance"], b["points_balance"]) == (20, 0)
    assert (await other_tenant.customer(foreign))["points_balance"] == 0


async def test_opposite_transfers_racing_through_two_writers_never_deadlock(
    tenant: Tenant, database: Database, unique_id: str
) -> None:
    """Two writers on one database (as two processes would be), transfers both ways at
    once: every one is applied or refused for lack of points, never an error, and no
    point is made or lost."""
    source, target = await funded_pair(tenant, unique_id, 40)
    assert (await tenant.adjust(target, 40)).status_code == 201
    writers = [LedgerWriter(database, batch_wait_ms_max=2) for _ in range(2)]
    for writer in writers:
        await writer.start()
    rng = random.Random(7)

    async def one(n: int) -> Outcome:
        a, b = (source, target) if n % 2 else (target, source)
        operation = TransferPoints(CustomerRef(a), CustomerRef(b), rng.randint(1, 15) * 100)
        writer = writers[rng.randrange(2)]
        return await writer.submit(Movement(tenant.merchant_id, operation))

    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(120))), 60)
    finally:
        for writer in writers:
            await writer.stop()
    statuses = {outcome.status_code for outcome in outcomes}
    assert statuses <= {201, 422}, statuses
    assert 201 in statuses
    a_balance, _ = await check_ledger_invariants(tenant, source)
    b_balance, _ = await check_ledger_invariants(tenant, target)
    assert a_balance + b_balance == 8000  # 80 points, in hundredths
