"""The audit trail: every entry and event names who made it."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Awaitable, Callable
from typing import Any

from loyalty.auth.tokens import token_prefix
from loyalty.jobs import JobsRun
from tests.support.clock import Clock
from tests.support.tenant import Tenant

TRANSACTIONS = "/api/v1/public/customers/transactions"


async def _transactions(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await tenant.get(TRANSACTIONS, params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def _events(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await tenant.get("/api/v1/events", params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_an_api_key_a_job_and_an_import_are_each_named(
    tenant: Tenant,
    clock: Clock,
    run_jobs: Callable[[], Awaitable[JobsRun]],
    unique_id: str,
) -> None:
    key = f"api_key:{token_prefix(tenant.token)}"
    other_token = await tenant.new_key("all")
    other_key = f"api_key:{token_prefix(other_token)}"
    assert other_key != key
    patched = await tenant.client.patch(
        "/api/v1/settings/program",
        json={"expiry_policy": "fixed", "expiry_days": 1},
        headers=tenant.headers,
    )
    assert patched.status_code == 200, patched.text
    await tenant.enrol(unique_id)
    created = await tenant.adjust(unique_id, 40)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["actor"] == key
    debit = await tenant.client.post(
        TRANSACTIONS,
        params={"customer_id": unique_id},
        json={"points": -10, "description": "by the other key"},
        headers={"Authorization": f"Bearer {other_token}"},
    )
    assert debit.status_code == 201, debit.text
    assert debit.json()["data"]["actor"] == other_key

    clock.advance(days=2)
    await run_jobs()  # expires the rest of the credit
    entries = await _transactions(tenant, unique_id)
    assert [(e["kind"], e["points"], e["actor"]) for e in entries] == [
        ("expire", -30, "system"),
        ("adjustment", -10, other_key),
        ("adjustment", 40, key),
    ]
    events = {
        e["data"].get("transaction", {}).get("kind"): e for e in await _events(tenant, unique_id)
    }
    assert events["expire"]["actor"] == "system"
    assert events[None]["actor"] == key  # customer.created

    body = f"customer_id,points\n{unique_id}-imported,15\n{unique_id},5\n".encode()
    posted = await tenant.post(
        "/api/v1/imports", content=body, headers={"Content-Type": "text/csv"}
    )
    assert posted.status_code == 202, posted.text
    job_id = posted.json()["data"]["id"]
    for _ in range(400):
        job = (await tenant.get(f"/api/v1/imports/{job_id}")).json()["data"]
        if job["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "succeeded", job
    imported = await _transactions(tenant, f"{unique_id}-imported")
    assert [e["actor"] for e in imported] == [f"import:{job_id}"]
    assert (await _transactions(tenant, unique_id))[0]["actor"] == f"import:{job_id}"
    enrolled = await _events(tenant, f"{unique_id}-imported")
    assert {e["actor"] for e in enrolled} == {f"import:{job_id}"}

    exported = await tenant.get("/api/v1/exports/transactions.csv")
    assert exported.status_code == 200
    rows = [
        row
        for row in csv.DictReader(io.StringIO(exported.text))
        if row["customer_id"] in (unique_id, f"{unique_id}-imported")
    ]
    assert sorted(row["actor"] for row in rows) == sorted(
        [key, other_key, "system", f"import:{job_id}", f"import:{job_id}"]
    )
