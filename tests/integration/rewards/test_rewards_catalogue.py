"""The reward catalogue (/api/v1/rewards) and the redeemable endpoint's catalogue."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import events
from loyalty.merchants import repository as merchants_repository
from tests.support.rewards import FIVE_OFF, REDEEMABLE, REWARDS, TEN_PERCENT, create
from tests.support.tenant import Tenant


async def test_create_every_type(tenant: Tenant) -> None:
    bodies = [
        FIVE_OFF,
        TEN_PERCENT,
        {"name": "Free shipping", "reward_type": "free_shipping", "points_cost": 300,
         "reward_rule": {}, "code_validity_days": 30, "minimum_order_amount": 25.5},
        {"name": "Free mug", "reward_type": "free_product", "points_cost": 800,
         "reward_rule": {"variant_id": "4471"}, "per_customer_limit": 1},
        {"name": "$10 credit", "reward_type": "store_credit", "points_cost": 1000,
         "reward_rule": {"credit_amount": 10}, "active": False},
    ]  # fmt: skip
    created = [await create(tenant, body) for body in bodies]
    assert [reward["number"] for reward in created] == [1, 2, 3, 4, 5]
    five = created[0]
    uuid.UUID(five["id"])
    assert five["reward_rule"] == {"points_required": 500, "discount_value": 5}
    assert (five["active"], five["deleted_at"], five["description"]) == (
        True,
        None,
        FIVE_OFF["description"],
    )
    assert created[1]["reward_rule"] == {"points_required": 1000, "discount_percentage": 10}
    assert created[2]["minimum_order_amount"] == 25.5
    assert created[2]["code_validity_days"] == 30
    assert created[3]["reward_rule"] == {"points_required": 800, "variant_id": "4471"}
    assert created[4]["active"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reward_rule": {"discount_percentage": 101}, "reward_type": "percentage_discount"},
         "reward_rule.discount_percentage"),
        ({"reward_rule": {"discount_percentage": 0}, "reward_type": "percentage_discount"},
         "reward_rule.discount_percentage"),
        ({"reward_rule": {}}, "reward_rule.discount_value"),
        ({"reward_rule": {"discount_value": -5}}, "reward_rule.discount_value"),
        ({"reward_rule": {"discount_value": "5"}}, "reward_rule.discount_value"),
        ({"reward_rule": {"discount_value": 5, "coupon": "X"}}, "reward_rule.coupon"),
        ({"reward_rule": {"discount_value": 5, "points_required": 400}},
         "reward_rule.points_required"),
        ({"reward_type": "free_product", "reward_rule": {}}, "reward_rule.product_id"),
        ({"reward_type": "store_credit", "reward_rule": {}}, "reward_rule.credit_amount"),
        ({"reward_type": "gift_card"}, "reward_type"),
        ({"points_cost": 0}, "points_cost"),
        ({"points_cost": 12.5}, "points_cost"),
        ({"name": ""}, "name"),
        ({"name": "<b></b>"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"description": "x" * 501}, "description"),
        ({"code_validity_days": 0}, "code_validity_days"),
        ({"minimum_order_amount": 1.001}, "minimum_order_amount"),
        ({"per_customer_limit": 0}, "per_customer_limit"),
        ({"colour": "red"}, "colour"),
    ],
)  # fmt: skip
async def test_invalid_rewards_are_422_naming_the_field(
    tenant: Tenant, change: dict[str, Any], field: str
) -> None:
    response = await tenant.post(REWARDS, json={**FIVE_OFF, **change})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    listed = await tenant.get(REWARDS)
    assert listed.json()["data"] == []  # nothing half-written


async def test_get_update_delete(tenant: Tenant, other_tenant: Tenant) -> None:
    reward = await create(tenant, FIVE_OFF)
    path = f"{REWARDS}/{reward['id']}"
    assert (await tenant.get(path)).json()["data"] == reward
    for response in (
        await other_tenant.get(path),
        await other_tenant.client.patch(path, json={"name": "x"}, headers=other_tenant.headers),
        await other_tenant.client.delete(path, headers=other_tenant.headers),
        await tenant.get(f"{REWARDS}/not-a-uuid"),
        await tenant.get(f"{REWARDS}/{uuid.uuid4()}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "reward_not_found"

    response = await tenant.client.patch(
        path, json={"name": "$6 off", "points_cost": 600}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert (updated["name"], updated["points_cost"]) == ("$6 off", 600)
    assert updated["reward_rule"] == {"points_required": 600, "discount_value": 5}
    assert updated["number"] == reward["number"]
    # Changing the type needs a rule that fits it.
    response = await tenant.client.patch(
        path, json={"reward_type": "store_credit"}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "reward_rule.discount_value"

    response = await tenant.client.delete(path, headers=tenant.headers)
    assert response.status_code == 204
    assert response.content == b""
    kept = (await tenant.get(path)).json()["data"]
    assert kept["active"] is False
    assert kept["deleted_at"] is not None
    assert (await tenant.get(REWARDS)).json()["data"] == []
    assert (await tenant.client.delete(path, headers=tenant.headers)).status_code == 404
    response = await tenant.client.patch(path, json={"name": "back"}, headers=tenant.headers)
    assert response.status_code == 404


async def test_list_pages_in_number_order(tenant: Tenant) -> None:
    for n in range(5):
        await create(tenant, {**FIVE_OFF, "name": f"reward {n}"})
    first = (await tenant.get(REWARDS, params={"limit": 3})).json()
    second = (await tenant.get(REWARDS, params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [r["number"] for r in first["data"]] == [1, 2, 3]
    assert [r["number"] for r in second["data"]] == [4, 5]
    assert second["next_cursor"] is None
    assert (await tenant.get(REWARDS, params={"limit": 101})).status_code == 422


async def test_concurrent_creates_get_distinct_numbers(tenant: Tenant) -> None:
    responses = await asyncio.gather(
        *(tenant.post(REWARDS, json={**FIVE_OFF, "name": f"r{n}"}) for n in range(12))
    )
    numbers = sorted(response.json()["data"]["number"] for response in responses)
    assert numbers == list(range(1, 13))


async def test_writes_are_idempotent_and_evented(tenant: Tenant) -> None:
    headers = {"Idempotency-Key": "new-reward"}
    first = await tenant.post(REWARDS, json=FIVE_OFF, headers=headers)
    again = await tenant.post(REWARDS, json=FIVE_OFF, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len((await tenant.get(REWARDS)).json()["data"]) == 1
    reward_id = first.json()["data"]["id"]
    await tenant.client.patch(
        f"{REWARDS}/{reward_id}", json={"active": False}, headers=tenant.headers
    )
    await tenant.client.delete(f"{REWARDS}/{reward_id}", headers=tenant.headers)
    async with tenant.database.read() as connection:
        types = (
            (
                await connection.execute(
                    select(events.c.type)
                    .where(events.c.merchant_id == tenant.merchant_id)
                    .order_by(events.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert types == ["reward.created", "reward.updated", "reward.deleted"]


async def test_redeemable_seed_002(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 650)
    five = await create(tenant, FIVE_OFF)
    ten = await create(tenant, TEN_PERCENT)
    hidden = await create(tenant, {**FIVE_OFF, "name": "inactive", "active": False})
    gone = await create(tenant, {**FIVE_OFF, "name": "deleted", "points_cost": 1})
    await tenant.client.delete(f"{REWARDS}/{gone['id']}", headers=tenant.headers)
    response = await tenant.get(REDEEMABLE, params={"customer_id": unique_id})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["points_balance"] == 650
    assert data["customer_rewards"] == []
    assert data["rewards"] == [
        {
            "id": five["id"],
            "name": "$5 off your next order",
            "description": "Redeem 500 points for a $5 discount.",
            "reward_type": "fixed_discount",
            "points_cost": 500,
            "reward_rule": {"points_required": 500, "discount_value": 5},
            "can_redeem": True,
            "points_needed": 0,
        },
        {
            "id": ten["id"],
            "name": "10% off your next order",
            "description": "Redeem 1000 points for 10% off.",
            "reward_type": "percentage_discount",
            "points_cost": 1000,
            "reward_rule": {"points_required": 1000, "discount_percentage": 10},
            "can_redeem": False,
            "points_needed": 350,
        },
    ]
    assert hidden["id"] not in {reward["id"] for reward in data["rewards"]}


async def test_fractional_costs_follow_the_programme(tenant: Tenant, unique_id: str) -> None:
    async def two_decimals(connection: AsyncConnection) -> None:
        await merchants_repository.set_points_decimals(
            connection, tenant.merchant_id, 2, datetime.now(UTC)
        )

    await tenant.database.transaction(two_decimals)
    reward = await create(tenant, {**FIVE_OFF, "points_cost": 12.5})
    assert reward["points_cost"] == 12.5
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 10.25)
    data = (await tenant.get(REDEEMABLE, params={"customer_id": unique_id})).json()["data"]
    assert data["rewards"][0]["points_needed"] == 2.25
    assert data["rewards"][0]["can_redeem"] is False
