"""Rewards in the catalogue, and customers funded to redeem them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.tenant import Tenant

REWARDS = "/api/v1/rewards"
REDEEMABLE = "/api/v1/public/customers/rewards/redeemable"
CUSTOMER_REWARDS = "/api/v1/public/customers/rewards"
REDEEM = f"{CUSTOMER_REWARDS}/redeem"
FIVE_OFF = {
    "name": "$5 off your next order",
    "description": "Redeem 500 points for a $5 discount.",
    "reward_type": "fixed_discount",
    "points_cost": 500,
    "reward_rule": {"discount_value": 5},
}
TEN_PERCENT = {
    "name": "10% off your next order",
    "description": "Redeem 1000 points for 10% off.",
    "reward_type": "percentage_discount",
    "points_cost": 1000,
    "reward_rule": {"points_required": 1000, "discount_percentage": 10},
}


async def create(tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = await tenant.post(REWARDS, json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def redeem(tenant: Tenant, customer_id: str, reward_id: str, **kwargs: Any) -> httpx.Response:
    return await tenant.post(
        REDEEM, params={"customer_id": customer_id}, json={"reward_id": reward_id}, **kwargs
    )


async def funded(tenant: Tenant, customer_id: str, points: int) -> None:
    await tenant.enrol(customer_id)
    if points:
        response = await tenant.adjust(customer_id, points)
        assert response.status_code == 201, response.text
