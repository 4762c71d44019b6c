"""Seed 000: POST /api/v1/public/customers/transactions, and the activity log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.tables import events
from loyalty.db.types import utc_now
from loyalty.merchants import repository as merchants_repository
from tests.support.ledger import TRANSACTIONS, ledger_count
from tests.support.tenant import Tenant


async def test_seed_000_credit(tenant: Tenant) -> None:
    customer = await tenant.enrol("9049402769586")
    response = await tenant.post(
        TRANSACTIONS,
        params={"customer_id": "9049402769586"},
        json={"points": 100, "description": "Bonus points for completing a survey"},
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    uuid.UUID(data["transaction_id"])
    assert data["customer_id"] == customer["id"]  # the customer's UUID, as in the seed
    assert data["points"] == 100
    assert data["type"] == "credit"
    assert data["kind"] == "adjustment"
    assert data["description"] == "Bonus points for completing a survey"
    assert data["visible_to_customer"] is True
    assert data["apply_to_lifetime"] is True
    assert data["internal_note"] is None
    assert data["points_balance"] == 100
    assert "Idempotent-Replayed" not in response.headers


async def test_debit_and_balances(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 500)).status_code == 201
    response = await tenant.adjust(unique_id, -200)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["type"] == "debit"
    assert data["points"] == -200
    assert data["apply_to_lifetime"] is False
    customer = await tenant.customer(unique_id)
    assert customer["points_balance"] == 300
    assert customer["lifetime_points"] == 500


async def test_debit_beyond_balance_moves_nothing(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 50)
    before = await ledger_count(tenant)
    response = await tenant.adjust(unique_id, -51)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "insufficient_points"
    assert error["details"] == {"points_balance": 50, "points_requested": 51}
    assert await ledger_count(tenant) == before
    assert (await tenant.customer(unique_id))["points_balance"] == 50
    # Exactly the balance is fine and leaves zero.
    assert (await tenant.adjust(unique_id, -50)).status_code == 201
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_lifetime_flag_cases_of_seed_001(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 100)  # reward: lifetime +100
    await tenant.adjust(unique_id, 30, apply_to_lifetime=False)  # refund of redeemed points
    await tenant.adjust(unique_id, -20)  # redeem: lifetime unchanged
    await tenant.adjust(unique_id, -40, apply_to_lifetime=True)  # remove earned points
    customer = await tenant.customer(unique_id)
    assert customer["points_balance"] == 70
    assert customer["lifetime_points"] == 60


async def test_lifetime_never_goes_negative(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 100, apply_to_lifetime=False)
    response = await tenant.adjust(unique_id, -80, apply_to_lifetime=True)
    assert response.status_code == 201
    customer = await tenant.customer(unique_id)
    assert customer["lifetime_points"] == 0
    assert customer["points_balance"] == 20


async def test_customer_email_alternative(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    response = await tenant.post(
        TRANSACTIONS,
        params={"customer_email": f"{unique_id}@Example.com"},
        json={"points": 7, "description": "by email"},
    )
    assert response.status_code == 201
    assert (await tenant.customer(unique_id))["points_balance"] == 7


async def test_text_rules(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    response = await tenant.adjust(
        unique_id, 5, "  <i>Thanks</i> &amp; welcome  ", internal_note="  ticket #12  "
    )
    data = response.json()["data"]
    assert data["description"] == "Thanks & welcome"
    assert data["internal_note"] == "ticket #12"
    # Blank after stripping: the programme's default text.
    response = await tenant.adjust(unique_id, 5, "<p> </p>")
    assert response.json()["data"]["description"] == "Points adjustment"
    # Limits apply to the text as sent: 255 ok, 256 rejected even if tags would shrink it.
    assert (await tenant.adjust(unique_id, 5, "x" * 255)).status_code == 201
    response = await tenant.adjust(unique_id, 5, "<b>" + "x" * 250 + "</b>")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "description"
    response = await tenant.adjust(unique_id, 5, "ok", internal_note="n" * 501)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "internal_note"
    assert (await tenant.adjust(unique_id, 5, "ok", internal_note="n" * 500)).status_code == 201


async def test_visibility_and_expiry_fields(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    expires_at = (utc_now() + timedelta(days=30)).isoformat()
    response = await tenant.adjust(
        unique_id, 5, "hidden", visible_to_customer=False, expires_at=expires_at
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["visible_to_customer"] is False
    assert datetime.fromisoformat(data["expires_at"]) == datetime.fromisoformat(expires_at)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"points": -1, "expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": "2999-01-01T00:00:00"}, "expires_at"),  # no timezone
        ({"points": 0}, "points"),
        ({"points": "5"}, "points"),
        ({"points": True}, "points"),
        ({"points": None}, "points"),
        ({"points": 1.5}, "points"),
        ({"points": 10**12}, "points"),
        ({"points": 1e300}, "points"),
        ({"description": None}, "description"),
        ({"description": 5}, "description"),
        ({"visible_to_customer": "yes"}, "visible_to_customer"),
        ({"apply_to_lifetime": 1}, "apply_to_lifetime"),
        ({"bogus": 1}, "bogus"),
    ],
)
async def test_bad_transactions_are_422_and_move_nothing(
    tenant: Tenant, unique_id: str, extra: dict[str, Any], field: str
) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 10)
    before = await ledger_count(tenant)
    body = {"points": 5, "description": "x", **extra}
    response = await tenant.post(TRANSACTIONS, params={"customer_id": unique_id}, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert await ledger_count(tenant) == before


async def test_missing_fields(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    for body, field in (({"description": "x"}, "points"), ({"points": 5}, "description")):
        response = await tenant.post(TRANSACTIONS, params={"customer_id": unique_id}, json=body)
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == field


async def test_non_finite_numbers_are_not_json(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        response = await tenant.post(
            TRANSACTIONS,
            params={"customer_id": unique_id},
            content=b'{"points": ' + literal + b', "description": "x"}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_json"


async def test_unknown_customer_is_404_and_moves_nothing(tenant: Tenant) -> None:
    response = await tenant.adjust("no-such-customer", 5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"
    assert await ledger_count(tenant) == 0


async def test_fractional_points_when_the_programme_allows(tenant: Tenant, unique_id: str) -> None:
    async def allow_two_decimals(connection: AsyncConnection) -> None:
        await merchants_repository.set_points_decimals(
            connection, tenant.merchant_id, 2, datetime.now(UTC)
        )

    await tenant.database.transaction(allow_two_decimals)
    await tenant.enrol(unique_id)
    for points in (0.1, 0.2, 10.05):
        assert (await tenant.adjust(unique_id, points)).status_code == 201
    customer = await tenant.customer(unique_id)
    assert customer["points_balance"] == 10.35  # exact: no 0.30000000000000004
    response = await tenant.adjust(unique_id, 0.001)
    assert response.status_code == 422
    assert (await tenant.adjust(unique_id, -10.35)).status_code == 201
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_every_change_writes_an_event(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 10)
    await tenant.adjust(unique_id, -3)
    await tenant.adjust(unique_id, -100)  # rejected: no event
    async with tenant.database.read() as connection:
        count = (
            await connection.execute(
                select(func.count()).where(
                    events.c.merchant_id == tenant.merchant_id,
                    events.c.type == "transaction.created",
                )
            )
        ).scalar_one()
    assert count == 2


async def test_activity_log_pagination(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    for points in range(1, 8):
        assert (await tenant.adjust(unique_id, points, f"credit {points}")).status_code == 201
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"customer_id": unique_id, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await tenant.get(TRANSACTIONS, params=params)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        seen.extend(item["points"] for item in body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]  # newest first
    assert pages == 3
    default = await tenant.get(TRANSACTIONS, params={"customer_id": unique_id})
    assert len(default.json()["data"]) == 7
    assert default.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "czotNQ"}, "cursor"),  # "s:-5"
    ],
)
async def test_activity_log_bad_parameters(
    tenant: Tenant, unique_id: str, params: dict[str, Any], field: str
) -> None:
    await tenant.enrol(unique_id)
    response = await tenant.get(TRANSACTIONS, params={"customer_id": unique_id, **params})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


async def test_redeemable_shape(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 650)
    response = await tenant.get(
        "/api/v1/public/customers/rewards/redeemable", params={"customer_id": unique_id}
    )
    assert response.status_code == 200
    assert response.json() == {
        "data": {"points_balance": 650, "rewards": [], "customer_rewards": []}
    }
