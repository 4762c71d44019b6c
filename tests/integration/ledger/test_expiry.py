"""Points expiry: fixed lots spent earliest-expiry first, inactivity, never retroactive."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select

from loyalty.db.engine import Database
from loyalty.db.tables import ledger_entries, point_lots
from loyalty.db.types import utc_now
from loyalty.ledger.maintenance import run_maintenance
from loyalty.ledger.writer import LedgerWriter
from loyalty.settings import Settings
from tests.support.clock import Clock
from tests.support.tenant import Tenant, event_types

SETTINGS = "/api/v1/settings/program"
PREVIEW = "/api/v1/settings/program/preview"
TRANSACTIONS = "/api/v1/public/customers/transactions"


async def set_policy(tenant: Tenant, policy: str, days: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"expiry_policy": policy}
    if days is not None:
        body["expiry_days"] = days
    response = await tenant.client.patch(SETTINGS, json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def credit(tenant: Tenant, customer_id: str, points: float, **extra: Any) -> dict[str, Any]:
    response = await tenant.adjust(customer_id, points, **extra)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def entries(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    """The activity log, oldest first."""
    response = await tenant.get(TRANSACTIONS, params={"customer_id": customer_id, "limit": 100})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["data"]))


async def lots(tenant: Tenant, customer_uuid: str) -> list[tuple[float, datetime]]:
    """The customer's open lots: (points left, expiry), earliest expiry first."""
    async with tenant.database.read() as connection:
        rows = await connection.execute(
            select(point_lots.c.remaining_minor, point_lots.c.expires_at)
            .where(
                point_lots.c.merchant_id == tenant.merchant_id,
                point_lots.c.customer_id == uuid.UUID(customer_uuid),
            )
            .order_by(point_lots.c.expires_at)
        )
        return [(row.remaining_minor / 100, row.expires_at) for row in rows]


def near(value: str | None, expected: datetime) -> bool:
    assert value is not None
    return abs(datetime.fromisoformat(value) - expected) < timedelta(seconds=5)


async def test_fixed_expiry_walkthrough(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any
) -> None:
    """Three lots on three days, 365-day expiry; a debit spends the oldest first; the
    rest of each lot expires on its own day."""
    await tenant.enrol(unique_id)
    await set_policy(tenant, "fixed", 365)
    day_0 = utc_now()
    await credit(tenant, unique_id, 100, description="Lot A")
    clock.advance(days=10)
    await credit(tenant, unique_id, 200, description="Lot B")
    clock.advance(days=10)
    await credit(tenant, unique_id, 300, description="Lot C")
    customer = await tenant.customer(unique_id)
    print(
        f"\nday 20: balance {customer['points_balance']}, lots {await lots(tenant, customer['id'])}"
    )
    assert customer["expiring_points"] == 100
    assert near(customer["points_expire_at"], day_0 + timedelta(days=365))

    # A debit of 150 takes all of lot A (oldest) and 50 of lot B.
    debit = await tenant.adjust(unique_id, -150, description="Spent")
    assert debit.status_code == 201, debit.text
    remaining = await lots(tenant, customer["id"])
    print(f"after spending 150: {remaining}")
    assert [points for points, _ in remaining] == [150, 300]
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["expiring_points"]) == (450, 150)
    assert near(customer["points_expire_at"], day_0 + timedelta(days=375))

    # Day 366: nothing has reached its date any more (lot A was spent).
    clock.advance(days=346)
    await run_jobs()
    assert (await tenant.customer(unique_id))["points_balance"] == 450

    # Day 376: the rest of lot B expires; lot C keeps its date.
    clock.advance(days=10)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    print(
        f"day 376: balance {customer['points_balance']}, expired {customer['points_expired']}, "
        f"next {customer['expiring_points']} at {customer['points_expire_at']}"
    )
    assert (customer["points_balance"], customer["points_expired"]) == (300, 150)
    assert customer["lifetime_points"] == 600  # expiry never lowers lifetime
    assert (customer["expiring_points"], customer["points_spent"]) == (300, 0)
    last = (await entries(tenant, unique_id))[-1]
    assert (last["kind"], last["points"], last["apply_to_lifetime"]) == ("expire", -150, False)
    assert last["description"] == "Points expired"

    # A second run finds nothing left to expire.
    await run_jobs()
    assert len(await entries(tenant, unique_id)) == 5

    clock.advance(days=10)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (0, 450)
    assert (customer["expiring_points"], customer["points_expire_at"]) == (0, None)
    assert await lots(tenant, customer["id"]) == []


async def test_enabling_expiry_is_not_retroactive(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any
) -> None:
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 100)  # before any policy: never expires
    await set_policy(tenant, "fixed", 30)
    await credit(tenant, unique_id, 40)
    customer = await tenant.customer(unique_id)
    assert (customer["expiring_points"], customer["points_balance"]) == (40, 140)

    clock.advance(days=31)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (100, 40)

    # Turning the policy off keeps dates already given and dates nothing new.
    await set_policy(tenant, "none")
    await credit(tenant, unique_id, 5)
    assert (await tenant.customer(unique_id))["expiring_points"] == 0


async def test_dated_points_are_spent_before_undated_ones(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any
) -> None:
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 100)
    await credit(tenant, unique_id, 50, expires_at=(utc_now() + timedelta(days=5)).isoformat())
    assert (await tenant.adjust(unique_id, -60)).status_code == 201
    customer = await tenant.customer(unique_id)
    # The 50 expiring points went first, then 10 that never expire.
    assert (customer["points_balance"], customer["expiring_points"]) == (90, 0)
    clock.advance(days=6)
    await run_jobs()
    assert (await tenant.customer(unique_id))["points_balance"] == 90


async def test_an_explicit_expiry_overrides_the_policy(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any
) -> None:
    await tenant.enrol(unique_id)
    await set_policy(tenant, "fixed", 365)
    soon = utc_now() + timedelta(days=3)
    await credit(tenant, unique_id, 70, expires_at=soon.isoformat())
    await credit(tenant, unique_id, 30)
    customer = await tenant.customer(unique_id)
    assert customer["expiring_points"] == 70
    assert near(customer["points_expire_at"], soon)
    clock.advance(days=4)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (30, 70)
    assert customer["expiring_points"] == 30
    assert near(customer["points_expire_at"], soon - timedelta(days=3) + timedelta(days=365))


async def test_inactivity_expires_the_whole_balance(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any
) -> None:
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 80)
    clock.advance(days=100)  # long idle before the policy: not held against the customer
    await set_policy(tenant, "inactivity", 30)
    customer = await tenant.customer(unique_id)
    assert customer["expiring_points"] == 80
    assert near(customer["points_expire_at"], utc_now() + timedelta(days=30))
    await run_jobs()
    assert (await tenant.customer(unique_id))["points_balance"] == 80

    clock.advance(days=20)
    await credit(tenant, unique_id, 20)  # earning restarts the count
    clock.advance(days=20)
    await run_jobs()
    assert (await tenant.customer(unique_id))["points_balance"] == 100
    # A debit that is not a redemption is not activity.
    assert (await tenant.adjust(unique_id, -10)).status_code == 201
    clock.advance(days=11)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (0, 90)
    assert customer["lifetime_points"] == 100
    assert (customer["expiring_points"], customer["points_expire_at"]) == (0, None)
    assert (await entries(tenant, unique_id))[-1]["kind"] == "expire"


async def test_concurrent_workers_expire_once(
    tenant: Tenant,
    unique_id: str,
    clock: Clock,
    app: Litestar,
    settings: Settings,
) -> None:
    """Two workers, each with its own writer and connections (like two processes)."""
    await tenant.enrol(unique_id)
    await set_policy(tenant, "fixed", 10)
    for points in (10, 20, 30):
        await credit(tenant, unique_id, points)
    clock.advance(days=11)
    other = Database(settings)
    await other.start()
    other_writer = LedgerWriter(other)
    await other_writer.start()
    try:
        await asyncio.gather(
            run_maintenance(app.state.database, app.state.ledger_writer),
            run_maintenance(other, other_writer),
            run_maintenance(other, other_writer),
        )
    finally:
        await other_writer.stop()
        await other.dispose()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (0, 60)
    async with tenant.database.read() as connection:
        expire_entries = (
            await connection.execute(
                select(ledger_entries.c.points_minor).where(
                    ledger_entries.c.merchant_id == tenant.merchant_id,
                    ledger_entries.c.kind == "expire",
                )
            )
        ).all()
    assert [row.points_minor for row in expire_entries] == [-6000]


async def test_expiry_settings_are_validated(tenant: Tenant) -> None:
    for body, field in (
        ({"expiry_policy": "fixed"}, "expiry_days"),
        ({"expiry_policy": "none", "expiry_days": 30}, "expiry_days"),
        ({"expiry_policy": "fixed", "expiry_days": 0}, "expiry_days"),
        ({"expiry_policy": "monthly", "expiry_days": 30}, "expiry_policy"),
        ({"expiry_days": 30}, "expiry_days"),  # the policy is still none
    ):
        response = await tenant.client.patch(SETTINGS, json=body, headers=tenant.headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field
    settings = (await tenant.get(SETTINGS)).json()["data"]
    assert (settings["expiry_policy"], settings["expiry_days"]) == ("none", None)

    saved = await set_policy(tenant, "fixed", 90)
    assert saved["expiry_changed_at"] is not None
    # Changing the days alone keeps the policy.
    response = await tenant.client.patch(SETTINGS, json={"expiry_days": 45}, headers=tenant.headers)
    assert response.json()["data"]["expiry_policy"] == "fixed"
    assert response.json()["data"]["expiry_days"] == 45
    assert "settings.updated" in await event_types(tenant)


async def preview(tenant: Tenant, body: dict[str, Any]) -> httpx.Response:
    return await tenant.post(PREVIEW, json=body)


async def test_the_preview_counts_what_a_change_would_affect(
    tenant: Tenant, unique_id: str
) -> None:
    for suffix, points in (("a", 100), ("b", 50), ("c", 0)):
        await tenant.enrol(unique_id + suffix)
        if points:
            await credit(tenant, unique_id + suffix, points)
    response = await preview(tenant, {"expiry_policy": "inactivity", "expiry_days": 90})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["newly_expiring"] == {"customers": 2, "points": 150}
    assert data["expiring_now"] == {"customers": 0, "points": 0}
    assert near(data["first_expiry_at"], utc_now() + timedelta(days=90))
    assert (data["current_expiry_policy"], data["expiry_policy"]) == ("none", "inactivity")
    # Nothing was saved.
    assert (await tenant.get(SETTINGS)).json()["data"]["expiry_policy"] == "none"

    fixed = (await preview(tenant, {"expiry_policy": "fixed", "expiry_days": 365})).json()["data"]
    assert fixed["newly_expiring"] == {"customers": 0, "points": 0}  # never retroactive
    await set_policy(tenant, "fixed", 365)
    await credit(tenant, unique_id + "a", 25)
    await set_policy(tenant, "inactivity", 30)
    back = (await preview(tenant, {"expiry_policy": "none"})).json()["data"]
    assert back["no_longer_expiring"] == {"customers": 2, "points": 150}
    assert back["dated"] == {"customers": 1, "points": 25}

    bad = await preview(tenant, {"expiry_policy": "fixed"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "expiry_days"


@pytest.mark.parametrize("decimals", [2])
async def test_fractional_points_expire_exactly(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: Any, decimals: int
) -> None:
    response = await tenant.client.patch(
        SETTINGS,
        json={"points_decimals": decimals, "expiry_policy": "fixed", "expiry_days": 7},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 10.05)
    await credit(tenant, unique_id, 0.1)
    assert (await tenant.adjust(unique_id, -3.33)).status_code == 201
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["expiring_points"]) == (6.82, 6.72)
    clock.advance(days=8)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_expired"]) == (0, 6.82)
