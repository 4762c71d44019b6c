"""Yotpo surface, from seed 001: POST /api/v2/points/adjust with x-guid / x-api-key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth import service as auth_service
from tests.support.tenant import Tenant

ADJUST = "/api/v2/points/adjust"


def yotpo_headers(tenant: Tenant, token: str | None = None) -> dict[str, str]:
    return {"x-guid": str(tenant.merchant_id), "x-api-key": token or tenant.token}


async def adjust(tenant: Tenant, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", None)
    return await tenant.client.post(
        ADJUST, json=body, headers=headers if headers is not None else yotpo_headers(tenant),
        **kwargs,
    )  # fmt: skip


async def enrolled(tenant: Tenant, customer_id: str) -> str:
    email = f"{customer_id}@example.com"
    await tenant.enrol(customer_id, email=email)
    return email


# Seed 001's five adjustment use cases: (amount, apply_adjustment_to_points_earned) ->
# balance and points earned (lifetime) after, from 100 available / 100 earned.
USE_CASES = [
    ("Reward customer", 50, True, 150, 150),
    ("Refund points deducted by redemption/expiration", 50, False, 150, 100),
    ("Redeem points for a discount", -30, False, 70, 100),
    ("Remove earned points", -30, True, 70, 70),
    ("Expire points", -30, False, 70, 100),
]


@pytest.mark.parametrize(("case", "amount", "earned_flag", "balance", "earned"), USE_CASES)
async def test_the_five_adjustment_use_cases(
    tenant: Tenant,
    unique_id: str,
    case: str,
    amount: int,
    earned_flag: bool,
    balance: int,
    earned: int,
) -> None:
    email = await enrolled(tenant, unique_id)
    start = await adjust(
        tenant,
        {"customer_email": email, "point_adjustment_amount": 100,
         "apply_adjustment_to_points_earned": True, "history_title": "Opening"},
    )  # fmt: skip
    assert start.status_code == 200, start.text
    response = await adjust(
        tenant,
        {"customer_email": email.upper(), "point_adjustment_amount": amount,
         "apply_adjustment_to_points_earned": earned_flag, "history_title": case},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["customer_email"], data["customer_id"]) == (email, unique_id)
    assert (data["points_balance"], data["points_earned"]) == (balance, earned)
    log = (
        await tenant.get("/api/v1/public/customers/transactions", params={"customer_id": unique_id})
    ).json()["data"]
    assert (log[0]["description"], log[0]["apply_to_lifetime"]) == (case, earned_flag)


async def test_defaults_and_the_id_instead_of_the_email(tenant: Tenant, unique_id: str) -> None:
    await enrolled(tenant, unique_id)
    response = await adjust(tenant, {"customer_id": unique_id, "point_adjustment_amount": 10})
    assert response.status_code == 200, response.text
    assert (response.json()["points_balance"], response.json()["points_earned"]) == (10, 0)
    entry = (
        await tenant.get("/api/v1/public/customers/transactions", params={"customer_id": unique_id})
    ).json()["data"][0]
    # No history_title: the programme's default text; visible unless said otherwise.
    assert (entry["description"], entry["visible_to_customer"]) == ("Points adjustment", True)


async def test_auth_in_yotpos_style(tenant: Tenant, other_tenant: Tenant, unique_id: str) -> None:
    email = await enrolled(tenant, unique_id)
    body = {"customer_email": email, "point_adjustment_amount": 5}
    for headers in (
        {},
        {"x-api-key": tenant.token},
        {"x-guid": str(tenant.merchant_id)},
        {"Authorization": f"Bearer {tenant.token}"},  # the native style is not Yotpo's
        {"x-guid": str(other_tenant.merchant_id), "x-api-key": tenant.token},
        {"x-guid": str(tenant.merchant_id), "x-api-key": other_tenant.token},
        {"x-guid": "not-a-guid", "x-api-key": tenant.token},
        {"x-guid": str(tenant.merchant_id), "x-api-key": "lk_wrong"},
    ):
        response = await adjust(tenant, body, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
    by_query = await tenant.client.post(
        ADJUST,
        params={"guid": str(tenant.merchant_id), "api_key": tenant.token},
        json=body,
    )
    assert by_query.status_code == 200, by_query.text
    assert (await tenant.customer(unique_id))["points_balance"] == 5


async def test_bad_adjustments_are_422_in_the_native_shape(tenant: Tenant, unique_id: str) -> None:
    email = await enrolled(tenant, unique_id)
    for body, field in (
        ({"customer_email": email, "point_adjustment_amount": 0}, "point_adjustment_amount"),
        ({"customer_email": email, "point_adjustment_amount": 2**31}, "point_adjustment_amount"),
        ({"customer_email": email, "point_adjustment_amount": 1.5}, "point_adjustment_amount"),
        ({"point_adjustment_amount": 5}, "customer_email"),
        ({"customer_email": "nope", "point_adjustment_amount": 5}, "customer_email"),
        ({"customer_email": email, "point_adjustment_amount": 5, "history_title": "x" * 256},
         "history_title"),
    ):  # fmt: skip
        response = await adjust(tenant, body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
        assert response.json()["error"]["details"][0]["field"] == field, response.text
    unknown = await adjust(
        tenant, {"customer_email": "ghost@example.com", "point_adjustment_amount": 5}
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "customer_not_found")
    overdraw = await adjust(tenant, {"customer_email": email, "point_adjustment_amount": -1})
    assert (overdraw.status_code, overdraw.json()["error"]["code"]) == (422, "insufficient_points")
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_idempotency_key_replays(tenant: Tenant, unique_id: str) -> None:
    email = await enrolled(tenant, unique_id)
    headers = {**yotpo_headers(tenant), "Idempotency-Key": f"yotpo-{unique_id}"}
    body = {"customer_email": email, "point_adjustment_amount": 7}
    first = await adjust(tenant, body, headers=headers)
    again = await adjust(tenant, body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await tenant.customer(unique_id))["points_balance"] == 7


async def test_the_101st_request_in_a_minute_is_429(tenant: Tenant, unique_id: str) -> None:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(
            connection, merchant_id=tenant.merchant_id, scopes="all", rate_limit="100/minute"
        )
        return key.token

    token = await tenant.database.transaction(work)
    email = await enrolled(tenant, unique_id)
    headers = yotpo_headers(tenant, token)
    body = {"customer_email": email, "point_adjustment_amount": 1}
    statuses = [(await adjust(tenant, body, headers=headers)).status_code for _ in range(101)]
    assert statuses == [200] * 100 + [429]
    refused = await adjust(tenant, body, headers=headers)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == "100"
    assert (await tenant.customer(unique_id))["points_balance"] == 100
