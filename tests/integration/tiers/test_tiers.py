"""VIP tiers: the ladder (/api/v1/tiers) and where customers stand on it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from loyalty.db.tables import events
from loyalty.jobs import JobsRun
from tests.support.clock import Clock
from tests.support.rewards import FIVE_OFF, create, redeem
from tests.support.tenant import Tenant, event_types

TIERS = "/api/v1/tiers"
SETTINGS = "/api/v1/settings/program"
TIER_FIELDS = {
    "id", "name", "threshold", "basis", "window_days", "multiplier", "retention_days",
    "created_at", "updated_at",
}  # fmt: skip
RunJobs = Callable[[], Awaitable[JobsRun]]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def add_tier(tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await tenant.post(TIERS, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def patch_tier(
    tenant: Tenant, tier_id: str, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    headers = tenant.headers if token is None else {"Authorization": f"Bearer {token}"}
    return await tenant.client.patch(f"{TIERS}/{tier_id}", json=body, headers=headers)


async def all_tiers(tenant: Tenant) -> list[dict[str, Any]]:
    response = await tenant.get(TIERS)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def silver_and_gold(tenant: Tenant, gold_retention: int | None = 30) -> tuple[str, str]:
    silver = await add_tier(tenant, name="Silver", threshold=500)
    gold = await add_tier(tenant, name="Gold", threshold=1000, retention_days=gold_retention)
    return silver["id"], gold["id"]


async def tier_changes(tenant: Tenant) -> list[dict[str, Any]]:
    async with tenant.database.read() as connection:
        rows = await connection.execute(
            select(events.c.payload)
            .where(
                events.c.merchant_id == tenant.merchant_id,
                events.c.type == "customer.tier_changed",
            )
            .order_by(events.c.id)
        )
        return [json.loads(payload) for payload in rows.scalars().all()]


async def credit(tenant: Tenant, customer_id: str, points: float, **extra: Any) -> None:
    response = await tenant.adjust(customer_id, points, **extra)
    assert response.status_code == 201, response.text


def tier_name(customer: dict[str, Any]) -> str | None:
    tier = customer["tier"]
    return None if tier is None else str(tier["name"])


# The ladder --------------------------------------------------------------------


async def test_create_list_get_and_patch(tenant: Tenant) -> None:
    gold = await add_tier(tenant, name="Gold", threshold=1000, multiplier=1.5, retention_days=30)
    assert set(gold) == TIER_FIELDS
    assert (gold["name"], gold["threshold"], gold["multiplier"]) == ("Gold", 1000, 1.5)
    assert (gold["basis"], gold["window_days"], gold["retention_days"]) == (
        "lifetime_points",
        None,
        30,
    )
    silver = await add_tier(tenant, name="Silver", threshold=500)
    assert (silver["multiplier"], silver["retention_days"]) == (1, None)

    assert [t["name"] for t in await all_tiers(tenant)] == ["Silver", "Gold"]
    response = await tenant.get(f"{TIERS}/{gold['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == gold

    changed = await patch_tier(tenant, gold["id"], {"name": "Platinum", "retention_days": None})
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert (data["name"], data["threshold"], data["multiplier"]) == ("Platinum", 1000, 1.5)
    assert data["retention_days"] is None
    assert data["created_at"] == gold["created_at"]
    assert when(data["updated_at"]) >= when(gold["updated_at"])

    lowered = await patch_tier(tenant, gold["id"], {"threshold": 400})
    assert lowered.status_code == 200, lowered.text
    assert [t["name"] for t in await all_tiers(tenant)] == ["Platinum", "Silver"]
    assert (await tenant.get(f"{TIERS}/{gold['id']}")).json()["data"]["threshold"] == 400


async def test_basis_and_window_are_the_programmes(tenant: Tenant) -> None:
    bronze = await add_tier(tenant, name="Bronze", threshold=100, window_days=90)
    silver = await add_tier(tenant, name="Silver", threshold=500)
    assert (silver["basis"], silver["window_days"]) == ("lifetime_points", 90)
    assert {(t["basis"], t["window_days"]) for t in await all_tiers(tenant)} == {
        ("lifetime_points", 90)
    }

    cleared = await patch_tier(tenant, bronze["id"], {"window_days": None})
    assert cleared.status_code == 200, cleared.text
    spent = await patch_tier(tenant, silver["id"], {"basis": "amount_spent"})
    assert spent.status_code == 200, spent.text
    assert {(t["basis"], t["window_days"]) for t in await all_tiers(tenant)} == {
        ("amount_spent", None)
    }
    # Money thresholds may have cents even in a whole-points programme.
    gold = await add_tier(tenant, name="Gold", threshold=99.5)
    assert (gold["basis"], gold["threshold"]) == ("amount_spent", 99.5)

    windowed = await patch_tier(tenant, bronze["id"], {"window_days": 30})
    assert windowed.status_code == 200, windowed.text
    assert {t["window_days"] for t in await all_tiers(tenant)} == {30}


async def test_conflicting_tiers_are_409(tenant: Tenant) -> None:
    silver, gold = await silver_and_gold(tenant)
    cases: list[tuple[Callable[[], Awaitable[httpx.Response]], str]] = [
        (lambda: tenant.post(TIERS, json={"name": "sILVER", "threshold": 700}), "name"),
        (lambda: tenant.post(TIERS, json={"name": "Bronze", "threshold": 500}), "threshold"),
        (lambda: patch_tier(tenant, gold, {"name": "silver"}), "name"),
        (lambda: patch_tier(tenant, gold, {"threshold": 500}), "threshold"),
    ]
    for call, field in cases:
        response = await call()
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "tier_conflict"
        assert error["details"]["field"] == field
        assert error["details"]["tier_id"] == silver
    assert [(t["name"], t["threshold"]) for t in await all_tiers(tenant)] == [
        ("Silver", 500),
        ("Gold", 1000),
    ]
    # A tier does not conflict with itself.
    same = await patch_tier(tenant, silver, {"name": "SILVER", "threshold": 500})
    assert same.status_code == 200, same.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Gold", "threshold": 100, "basis": "amount_spent", "window_days": 0},
         "window_days"),
        ({"name": "Gold", "threshold": 100, "multiplier": 0.5}, "multiplier"),
        ({"name": "Gold", "threshold": 100, "multiplier": 11}, "multiplier"),
        ({"name": "Gold", "threshold": -1}, "threshold"),
        ({"name": "Gold", "threshold": 100.5}, "threshold"),
        ({"name": "   ", "threshold": 100}, "name"),
        ({"name": "Gold", "threshold": 100, "window_days": 0}, "window_days"),
        ({"name": "Gold", "threshold": 100, "retention_days": 0}, "retention_days"),
        ({"name": "Gold", "threshold": 100, "colour": "gold"}, "colour"),
    ],
)  # fmt: skip
async def test_bad_tiers_are_422(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    response = await tenant.post(TIERS, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"][0]["field"] == field
    assert await all_tiers(tenant) == []
    # Nothing was written: the programme's basis is still the default.
    first = await add_tier(tenant, name="First", threshold=10)
    assert (first["basis"], first["window_days"]) == ("lifetime_points", None)


async def test_unknown_tier_is_404(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = await add_tier(tenant, name="Silver", threshold=500)
    theirs = await add_tier(other_tenant, name="Silver", threshold=500)
    for tier_id in (str(uuid.uuid4()), "not-a-uuid", theirs["id"]):
        for response in (
            await tenant.get(f"{TIERS}/{tier_id}"),
            await patch_tier(tenant, tier_id, {"name": "Stolen"}),
        ):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "tier_not_found"
    assert [t["name"] for t in await all_tiers(other_tenant)] == ["Silver"]
    assert [t["id"] for t in await all_tiers(tenant)] == [mine["id"]]


async def test_tiers_need_settings_scopes(tenant: Tenant) -> None:
    tier = await add_tier(tenant, name="Silver", threshold=500)
    reader = await tenant.new_key("settings:read")
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert (await tenant.client.get(TIERS, headers=as_reader)).status_code == 200
    response = await tenant.client.post(
        TIERS, json={"name": "Gold", "threshold": 1000}, headers=as_reader
    )
    assert response.status_code == 403, response.text
    assert (await patch_tier(tenant, tier["id"], {"name": "X"}, token=reader)).status_code == 403
    outsider = await tenant.new_key("transactions:read")
    response = await tenant.client.get(TIERS, headers={"Authorization": f"Bearer {outsider}"})
    assert response.status_code == 403, response.text
    assert [t["name"] for t in await all_tiers(tenant)] == ["Silver"]


# Customers on the ladder -------------------------------------------------------


def show(moment: str, customer: dict[str, Any]) -> None:
    """One line of the walkthrough (pytest -s prints it)."""
    tier = customer["tier"]["name"] if customer["tier"] else None
    upcoming = customer["next_tier"]["name"] if customer["next_tier"] else None
    print(
        f"{moment}: lifetime {customer['lifetime_points']}, tier {tier}, "
        f"tier_expires_at {customer['tier_expires_at']}, next {upcoming} "
        f"(+{customer['amount_to_next_tier']})"
    )


async def test_customer_climbs_and_falls_after_retention(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    silver, gold = await silver_and_gold(tenant)
    customer = await tenant.enrol(unique_id)
    print()
    show("enrolled", customer)
    assert (customer["tier"], customer["tier_expires_at"]) == (None, None)
    assert customer["next_tier"] == {"id": silver, "name": "Silver"}
    assert customer["amount_to_next_tier"] == 500

    await credit(tenant, unique_id, 600)
    customer = await tenant.customer(unique_id)
    show("credit 600", customer)
    assert customer["tier"] == {"id": silver, "name": "Silver"}
    assert customer["next_tier"] == {"id": gold, "name": "Gold"}
    assert customer["amount_to_next_tier"] == 400
    assert customer["tier_expires_at"] is None
    assert (await event_types(tenant))[-1] == "customer.tier_changed"

    await credit(tenant, unique_id, 500)
    customer = await tenant.customer(unique_id)
    show("credit 500 (threshold 1000 crossed)", customer)
    assert customer["tier"] == {"id": gold, "name": "Gold"}
    assert (customer["next_tier"], customer["amount_to_next_tier"]) == (None, None)

    await credit(tenant, unique_id, -700, apply_to_lifetime=True)
    customer = await tenant.customer(unique_id)
    show("remove 700 earned points", customer)
    assert customer["lifetime_points"] == 400
    assert customer["tier"] == {"id": gold, "name": "Gold"}  # kept by retention
    expected = datetime.now(UTC) + timedelta(days=30)
    assert abs((when(customer["tier_expires_at"]) - expected).total_seconds()) < 60

    clock.advance(days=29)
    await run_jobs()
    show("day 29, jobs run", await tenant.customer(unique_id))
    assert (await tenant.customer(unique_id))["tier"] == {"id": gold, "name": "Gold"}

    clock.advance(days=2)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    show("day 31, retention lapsed, jobs run", customer)
    assert (customer["tier"], customer["tier_expires_at"]) == (None, None)
    assert customer["next_tier"] == {"id": silver, "name": "Silver"}
    assert customer["amount_to_next_tier"] == 100

    changes = await tier_changes(tenant)
    assert [(c["previous_tier"], c["tier"], c["direction"]) for c in changes] == [
        (None, {"id": silver, "name": "Silver"}, "upgrade"),
        ({"id": silver, "name": "Silver"}, {"id": gold, "name": "Gold"}, "upgrade"),
        ({"id": gold, "name": "Gold"}, None, "downgrade"),
    ]
    assert {c["customer_id"] for c in changes} == {unique_id}
    assert {c["basis"] for c in changes} == {"lifetime_points"}
    assert [c["basis_value"] for c in changes] == [600, 1100, 400]


async def test_earning_again_during_retention_keeps_the_tier(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    _, gold = await silver_and_gold(tenant)
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 1000)
    await credit(tenant, unique_id, -300, apply_to_lifetime=True)
    assert (await tenant.customer(unique_id))["tier_expires_at"] is not None

    await credit(tenant, unique_id, 300)  # qualifies again: retention ends
    customer = await tenant.customer(unique_id)
    assert (customer["tier"]["id"], customer["tier_expires_at"]) == (gold, None)
    clock.advance(days=31)
    await run_jobs()
    assert (await tenant.customer(unique_id))["tier"] == {"id": gold, "name": "Gold"}
    assert len(await tier_changes(tenant)) == 1


async def test_without_retention_the_downgrade_is_immediate(tenant: Tenant, unique_id: str) -> None:
    silver, _ = await silver_and_gold(tenant, gold_retention=None)
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 1100)
    assert tier_name(await tenant.customer(unique_id)) == "Gold"

    response = await tenant.adjust(unique_id, -500, apply_to_lifetime=True)
    assert response.status_code == 201, response.text
    customer = await tenant.customer(unique_id)
    assert customer["tier"] == {"id": silver, "name": "Silver"}
    assert customer["tier_expires_at"] is None
    last = (await tier_changes(tenant))[-1]
    assert (last["direction"], last["basis_value"]) == ("downgrade", 600)
    assert last["tier"] == {"id": silver, "name": "Silver"}


async def test_tier_changes_recheck_every_customer(
    tenant: Tenant, unique_id: str, run_jobs: RunJobs
) -> None:
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 600)
    assert (await tenant.customer(unique_id))["tier"] is None

    silver, _ = await silver_and_gold(tenant)
    assert (await tenant.customer(unique_id))["tier"] is None
    await run_jobs()
    assert (await tenant.customer(unique_id))["tier"] == {"id": silver, "name": "Silver"}
    [change] = await tier_changes(tenant)
    assert (change["customer_id"], change["direction"], change["basis_value"]) == (
        unique_id,
        "upgrade",
        600,
    )

    # Raising the threshold out of reach (Silver has no retention) drops the customer.
    response = await patch_tier(tenant, silver, {"threshold": 700})
    assert response.status_code == 200, response.text
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert customer["tier"] is None
    assert customer["amount_to_next_tier"] == 100
    assert len(await tier_changes(tenant)) == 2


async def test_rolling_window(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    regular = await add_tier(tenant, name="Regular", threshold=100, window_days=30)
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 150)
    assert (await tenant.customer(unique_id))["tier"] == {"id": regular["id"], "name": "Regular"}

    clock.advance(days=31)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert customer["tier"] is None
    assert customer["lifetime_points"] == 150
    assert customer["amount_to_next_tier"] == 100
    assert [c["direction"] for c in await tier_changes(tenant)] == ["upgrade", "downgrade"]


async def test_rolling_window_counts_recent_points_only(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    await add_tier(tenant, name="Regular", threshold=100, window_days=30)
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 80)
    clock.advance(days=20)
    await credit(tenant, unique_id, 30)  # 110 inside the window
    assert tier_name(await tenant.customer(unique_id)) == "Regular"

    clock.advance(days=11)  # the 80 have left the window: 30
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert customer["tier"] is None
    assert customer["amount_to_next_tier"] == 70

    clock.advance(days=1)
    await credit(tenant, unique_id, 75)  # 105 inside the window again
    assert tier_name(await tenant.customer(unique_id)) == "Regular"


async def test_spending_keeps_a_lifetime_tier(tenant: Tenant, unique_id: str) -> None:
    silver, _ = await silver_and_gold(tenant)
    five = await create(tenant, FIVE_OFF)
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 600)

    response = await redeem(tenant, unique_id, five["id"])
    assert response.status_code == 201, response.text
    await credit(tenant, unique_id, -100)  # apply_to_lifetime defaults to false on debits
    customer = await tenant.customer(unique_id)
    assert customer["points_balance"] == 0
    assert customer["lifetime_points"] == 600
    assert customer["tier"] == {"id": silver, "name": "Silver"}
    assert customer["tier_expires_at"] is None
    assert len(await tier_changes(tenant)) == 1


async def test_pending_points_reach_the_tier_when_released(tenant: Tenant, unique_id: str) -> None:
    silver, _ = await silver_and_gold(tenant)
    await tenant.enrol(unique_id)
    held = await tenant.adjust(unique_id, 600, pending_days=14)
    assert held.status_code == 201, held.text
    customer = await tenant.customer(unique_id)
    assert (customer["tier"], customer["lifetime_points"]) == (None, 0)

    response = await tenant.post(
        "/api/v1/public/customers/pending/approve", params={"customer_id": unique_id}
    )
    assert response.status_code == 200, response.text
    customer = await tenant.customer(unique_id)
    assert customer["lifetime_points"] == 600
    assert customer["tier"] == {"id": silver, "name": "Silver"}
    assert [c["basis_value"] for c in await tier_changes(tenant)] == [600]


async def test_an_entry_tier_reaches_new_customers_too(
    tenant: Tenant, unique_id: str, run_jobs: RunJobs
) -> None:
    veteran = f"{unique_id}-old"
    await tenant.enrol(veteran)
    member = await add_tier(tenant, name="Member", threshold=0)
    await add_tier(tenant, name="Silver", threshold=500)
    newcomer = await tenant.enrol(unique_id)
    await run_jobs()

    # Both have 0 lifetime points, so both qualify for the 0-point tier.
    assert (await tenant.customer(veteran))["tier"] == {"id": member["id"], "name": "Member"}
    newcomer = await tenant.customer(unique_id)
    assert newcomer["lifetime_points"] == 0
    assert newcomer["tier"] == {"id": member["id"], "name": "Member"}


async def test_spend_tiers_follow_orders_in_a_rolling_window(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    created = await tenant.post(
        TIERS,
        json={"name": "Big spender", "threshold": 100, "basis": "amount_spent", "window_days": 30},
    )
    assert created.status_code == 201, created.text
    orders = "/api/v1/public/orders"
    body = {"customer_id": unique_id, "currency": "USD"}
    await tenant.post(orders, json={**body, "order_id": "W-1", "total": 60})
    customer = await tenant.customer(unique_id)
    assert (customer["tier"], customer["amount_to_next_tier"]) == (None, 40)
    clock.advance(days=20)
    await tenant.post(orders, json={**body, "order_id": "W-2", "total": 50})
    assert tier_name(await tenant.customer(unique_id)) == "Big spender"
    refunded = await tenant.post(f"{orders}/W-2/refunds", json={"amount": 20})
    assert refunded.status_code == 201, refunded.text
    assert tier_name(await tenant.customer(unique_id)) is None  # 90 within the window
    await tenant.post(orders, json={**body, "order_id": "W-3", "total": 10})
    assert tier_name(await tenant.customer(unique_id)) == "Big spender"
    clock.advance(days=11)  # the first order leaves the window
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (tier_name(customer), customer["amount_to_next_tier"]) == (None, 60)
    assert customer["total_spent"] == 100  # all time, net of the refund
