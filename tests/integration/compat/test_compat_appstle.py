"""Appstle surface, from seed 004: /api/external/* with X-API-Key and the loyalty profile."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.rewards import FIVE_OFF, create
from tests.support.tenant import Tenant

BASE = "/api/external"
PROFILE_FIELDS = {
    "availablePoints", "pendingPoints", "creditedPoints", "spentAmount", "storeCreditBalance",
    "achievableTierId", "currentVipTier", "vipTierExpiredAt", "createAt", "rewardedForFacebook",
    "rewardedForPinterest", "rewardedForTwitter", "rewardedForInstagram", "rewardedForYoutube",
    "rewardedForTiktok", "rewardedForNewsLetter", "rewardedForSms", "referredCompleted",
    "customerStatus", "dob", "rewards", "rewardedForCreatingAccount",
    "rewardedForSharingOnFacebook", "rewardedForSharingOnX", "expiringPointsAmount",
    "pointsExpireAt",
}  # fmt: skip


def key(tenant: Tenant) -> dict[str, str]:
    return {"X-API-Key": tenant.token}


async def post(tenant: Tenant, path: str, body: dict[str, Any]) -> httpx.Response:
    return await tenant.client.post(f"{BASE}/{path}", json=body, headers=key(tenant))


async def customer_number(tenant: Tenant, number: int) -> int:
    await tenant.enrol(str(number), email=f"c{number}@example.com", date_of_birth="1990-05-17")
    return number


async def test_add_points_as_the_seed_shows(tenant: Tenant) -> None:
    customer = await customer_number(tenant, 67890)
    response = await post(
        tenant,
        "add-points",
        {"points": 50, "customerId": customer,
         "note": "Compensation for delayed shipping - Order #1234"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    profile = response.json()
    assert set(profile) == PROFILE_FIELDS
    assert (profile["availablePoints"], profile["pendingPoints"], profile["creditedPoints"]) == (
        50,
        0,
        50,
    )
    assert (profile["customerStatus"], profile["dob"]) == ("ACTIVE", "1990-05-17")
    entry = (
        await tenant.get(
            "/api/v1/public/customers/transactions", params={"customer_id": str(customer)}
        )
    ).json()["data"][0]
    assert entry["description"] == "Compensation for delayed shipping - Order #1234"

    by_email = await post(
        tenant, "add-points", {"points": 2, "customerEmail": f"C{customer}@EXAMPLE.com"}
    )
    assert by_email.json()["availablePoints"] == 52
    removed = await post(tenant, "remove-points", {"points": 12, "customerId": customer})
    assert removed.status_code == 200, removed.text
    assert (removed.json()["availablePoints"], removed.json()["creditedPoints"]) == (40, 52)
    long_note = await post(tenant, "add-points", {"points": 1, "customerId": customer,
                                                  "note": "n" * 500})  # fmt: skip
    assert long_note.status_code == 200, long_note.text  # Appstle's notes may be 500 long


async def test_bad_requests_are_400_with_a_clear_message(tenant: Tenant) -> None:
    customer = await customer_number(tenant, 424242)
    for body, words in (
        ({"points": 5, "customerId": customer, "customerEmail": "c424242@example.com"}, "not both"),
        ({"points": 5}, "customerId"),
        ({"points": 0, "customerId": customer}, "0.01"),
        ({"points": -5, "customerId": customer}, "0.01"),
        ({"points": 1.5, "customerId": customer}, "whole number"),
        ({"points": 5, "customerId": customer, "note": "n" * 501}, "500"),
        ({"points": "5", "customerId": customer}, "points"),
    ):
        response = await post(tenant, "add-points", body)
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert problem["status"] == 400
        assert words in problem["detail"], problem
    short = await post(tenant, "remove-points", {"points": 5, "customerId": customer})
    assert (short.status_code, short.json()["errorKey"]) == (400, "insufficient_points")
    unknown = await post(tenant, "add-points", {"points": 5, "customerId": 1})
    assert (unknown.status_code, unknown.json()["errorKey"]) == (404, "customer_not_found")
    profile = await tenant.client.get(
        f"{BASE}/customer-loyalty", params={"customer_id": customer}, headers=key(tenant)
    )
    assert profile.json()["availablePoints"] == 0


async def test_redeem_rules_and_redeeming(tenant: Tenant) -> None:
    reward = await create(tenant, FIVE_OFF)
    customer = await customer_number(tenant, 777)
    rules = await tenant.client.get(f"{BASE}/point-redeem-rules", headers=key(tenant))
    assert rules.status_code == 200, rules.text
    assert rules.json() == [
        {"id": reward["number"], "name": reward["name"], "description": reward["description"],
         "pointsRequired": 500, "type": "FIXED_DISCOUNT", "status": "ACTIVE"}
    ]  # fmt: skip
    await post(tenant, "add-points", {"points": 600, "customerId": customer})
    redeemed = await post(
        tenant, "redeem-points", {"redeemRuleId": reward["number"], "customerId": customer}
    )
    assert redeemed.status_code == 200, redeemed.text
    profile = redeemed.json()
    assert profile["availablePoints"] == 100
    assert [(r["status"], r["pointsUsed"]) for r in profile["rewards"]] == [("ACTIVE", 500)]
    assert profile["rewards"][0]["discountCode"]
    again = await post(
        tenant, "redeem-points", {"redeemRuleId": reward["number"], "customerId": customer}
    )
    assert (again.status_code, again.json()["errorKey"]) == (400, "insufficient_points")
    missing = await post(tenant, "redeem-points", {"redeemRuleId": 999, "customerId": customer})
    assert missing.status_code == 404


async def test_the_profile_is_filled_from_the_real_data(tenant: Tenant) -> None:
    await tenant.post("/api/v1/tiers", json={"name": "Silver", "threshold": 10})
    await tenant.post("/api/v1/tiers", json={"name": "Gold", "threshold": 1000})
    await tenant.post("/api/v1/earn-rules", json={"type": "newsletter", "points": 5})
    customer = await customer_number(tenant, 31337)
    await tenant.post(
        "/api/v1/public/customers/actions",
        params={"customer_id": str(customer)},
        json={"action": "newsletter"},
    )
    await tenant.post(
        "/api/v1/public/customers/transactions",
        params={"customer_id": str(customer)},
        json={"points": 20, "description": "held", "pending_days": 7},
    )
    await tenant.post(
        "/api/v1/public/orders",
        json={"order_id": "A-1", "customer_id": str(customer), "total": 42.5, "currency": "USD"},
    )
    await post(tenant, "add-points", {"points": 10, "customerId": customer})
    response = await tenant.client.get(
        f"{BASE}/customer-loyalty", params={"email": f"c{customer}@example.com"},
        headers=key(tenant),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    profile = response.json()
    assert (profile["availablePoints"], profile["pendingPoints"], profile["spentAmount"]) == (
        15,
        20,
        42.5,
    )
    assert (profile["currentVipTier"], profile["achievableTierId"]) == ("Silver", 2)
    assert profile["rewardedForNewsLetter"] is True
    assert profile["rewardedForSms"] is False
    assert profile["referredCompleted"] == 0
    both = await tenant.client.get(
        f"{BASE}/customer-loyalty",
        params={"customer_id": customer, "email": f"c{customer}@example.com"},
        headers=key(tenant),
    )
    assert both.status_code == 400


async def test_only_the_x_api_key_header(tenant: Tenant, other_tenant: Tenant) -> None:
    customer = await customer_number(tenant, 555)
    body = {"points": 5, "customerId": customer}
    for headers in ({}, {"Authorization": f"Bearer {tenant.token}"}, {"X-API-Key": "lk_no"}):
        response = await tenant.client.post(f"{BASE}/add-points", json=body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["status"] == 401
    foreign = await tenant.client.post(
        f"{BASE}/add-points", json=body, headers={"X-API-Key": other_tenant.token}
    )
    assert foreign.status_code == 404  # another merchant's key never sees this customer
