"""Idempotency-Key semantics on every POST."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import idempotency_keys
from loyalty.db.types import utc_now
from loyalty.idempotency import repository
from loyalty.idempotency import service as idempotency_service
from tests.support.ledger import TRANSACTIONS, ledger_count
from tests.support.tenant import Tenant


async def post_with_key(
    tenant: Tenant, key: str, body: dict[str, object], customer_id: str
) -> httpx.Response:
    return await tenant.post(
        TRANSACTIONS,
        params={"customer_id": customer_id},
        json=body,
        headers={"Idempotency-Key": key},
    )


async def test_same_key_same_request_replays(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    body = {"points": 25, "description": "once"}
    first = await post_with_key(tenant, "key-1", body, unique_id)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    second = await post_with_key(tenant, "key-1", body, unique_id)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert await ledger_count(tenant) == 1
    assert (await tenant.customer(unique_id))["points_balance"] == 25


async def test_body_compared_by_content_not_bytes(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    first = await tenant.post(
        TRANSACTIONS,
        params={"customer_id": unique_id},
        content=b'{"points": 5, "description": "a"}',
        headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    second = await tenant.post(
        TRANSACTIONS,
        params={"customer_id": unique_id},
        content=b'{"description":"a","points":5}',
        headers={"Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await ledger_count(tenant) == 1


@pytest.mark.parametrize("change", ["body", "query"])
async def test_same_key_other_request_is_422(tenant: Tenant, unique_id: str, change: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.enrol(f"{unique_id}-2")
    assert (
        await post_with_key(tenant, "k", {"points": 5, "description": "a"}, unique_id)
    ).status_code == 201
    if change == "body":
        response = await post_with_key(tenant, "k", {"points": 6, "description": "a"}, unique_id)
    else:
        response = await post_with_key(
            tenant, "k", {"points": 5, "description": "a"}, f"{unique_id}-2"
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert await ledger_count(tenant) == 1


async def test_business_errors_are_replayed(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    debit = {"points": -10, "description": "too early"}
    first = await post_with_key(tenant, "debit-1", debit, unique_id)
    assert first.status_code == 422
    assert first.json()["error"]["code"] == "insufficient_points"
    await tenant.adjust(unique_id, 100)
    again = await post_with_key(tenant, "debit-1", debit, unique_id)
    assert again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert (await tenant.customer(unique_id))["points_balance"] == 100


async def test_validation_failures_are_not_stored(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    bad = await post_with_key(tenant, "fix-me", {"points": 0, "description": "x"}, unique_id)
    assert bad.status_code == 422
    good = await post_with_key(tenant, "fix-me", {"points": 3, "description": "x"}, unique_id)
    assert good.status_code == 201
    assert "Idempotent-Replayed" not in good.headers


async def test_keys_are_scoped_per_merchant(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    await other_tenant.enrol(unique_id)
    body = {"points": 5, "description": "x"}
    assert (await post_with_key(tenant, "shared", body, unique_id)).status_code == 201
    response = await post_with_key(other_tenant, "shared", body, unique_id)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers


async def test_enrolment_honours_keys(tenant: Tenant, unique_id: str) -> None:
    body = {"customer_id": unique_id, "first_name": "Ada"}
    headers = {"Idempotency-Key": f"enrol-{unique_id}"}
    first = await tenant.post("/api/v1/public/customers", json=body, headers=headers)
    second = await tenant.post("/api/v1/public/customers", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\x01key"])
async def test_invalid_keys_are_422(tenant: Tenant, unique_id: str, key: str) -> None:
    await tenant.enrol(unique_id)
    response = await post_with_key(tenant, key, {"points": 5, "description": "x"}, unique_id)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail == {
        "field": "Idempotency-Key",
        "location": "header",
        "message": detail["message"],
    }
    assert await ledger_count(tenant) == 0


async def test_longest_key_is_accepted(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    response = await post_with_key(tenant, "k" * 255, {"points": 5, "description": "x"}, unique_id)
    assert response.status_code == 201


async def test_concurrent_duplicates_apply_once(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    body = {"points": 40, "description": "concurrent"}
    responses = await asyncio.gather(
        *(post_with_key(tenant, "race", body, unique_id) for _ in range(20))
    )
    statuses = sorted(response.status_code for response in responses)
    created = [response for response in responses if response.status_code == 201]
    assert set(statuses) <= {201, 409}, statuses
    assert created
    assert all(response.json() == created[0].json() for response in created)
    assert await ledger_count(tenant) == 1
    assert (await tenant.customer(unique_id))["points_balance"] == 40
    print(
        f"\n20 concurrent requests with one key: {statuses.count(201)} x 201 "
        f"({sum(r.headers.get('Idempotent-Replayed') == 'true' for r in created)} replayed), "
        f"{statuses.count(409)} x 409, ledger entries 1"
    )


async def test_records_are_kept_seven_days_then_purged(tenant: Tenant) -> None:
    now = utc_now()

    async def store(connection: AsyncConnection) -> None:
        for key, age_days in (("old", 8), ("recent", 6)):
            await repository.claim(
                connection, tenant.merchant_id, key, "f" * 64, now - timedelta(days=age_days)
            )
            await repository.complete(connection, tenant.merchant_id, key, 201, "{}")

    await tenant.database.transaction(store)
    # A retention shorter than the contract's 7 days is raised to 7.
    await idempotency_service.purge_expired(tenant.database, retention_days=1)
    async with tenant.database.read() as connection:
        kept = (
            (
                await connection.execute(
                    select(idempotency_keys.c.key).where(
                        idempotency_keys.c.merchant_id == tenant.merchant_id
                    )
                )
            )
            .scalars()
            .all()
        )
    assert kept == ["recent"]
