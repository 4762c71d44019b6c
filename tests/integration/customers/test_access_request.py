"""Access requests (GET /api/v1/public/customers/data): everything held about a customer."""

from __future__ import annotations

from typing import Any

from tests.support.rewards import FIVE_OFF, create, redeem
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"
DATA = f"{CUSTOMERS}/data"
ORDERS = "/api/v1/public/orders"
RULES = "/api/v1/earn-rules"


async def data_of(tenant: Tenant, **ref: str) -> dict[str, Any]:
    response = await tenant.get(DATA, params=ref)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"data"}
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_the_document_holds_every_section(tenant: Tenant, unique_id: str) -> None:
    referrer, email = f"{unique_id}-r", f"{unique_id}@example.com"
    for rule in (
        {"type": "purchase", "points_per_currency_unit": 1, "pending_days": 5},
        {"type": "newsletter", "points": 15},
        {"type": "referral", "points": 10, "referee_points": 5},
    ):
        assert (await tenant.post(RULES, json=rule)).status_code == 201
    await tenant.enrol(referrer)
    code = (await tenant.get(f"{CUSTOMERS}/referral", params={"customer_id": referrer})).json()
    await tenant.enrol(
        unique_id, email=email, first_name="Ada", last_name="King", date_of_birth="1985-12-10",
        referral_code=code["data"]["referral_code"],
    )  # fmt: skip
    own_code = (await tenant.get(f"{CUSTOMERS}/referral", params={"customer_id": unique_id})).json()
    assert (await tenant.adjust(unique_id, 600, internal_note="welcome")).status_code == 201
    reward = await create(tenant, FIVE_OFF)
    redeemed = (await redeem(tenant, unique_id, reward["id"])).json()["data"]
    newsletter = await tenant.post(
        f"{CUSTOMERS}/actions", params={"customer_id": unique_id}, json={"action": "newsletter"}
    )
    assert newsletter.status_code == 201
    placed = await tenant.post(
        ORDERS, json={"order_id": f"o-{unique_id}", "customer_id": unique_id, "total": 80,
                      "currency": "USD"},
    )  # fmt: skip
    assert placed.status_code == 201, placed.text
    refunded = await tenant.post(f"{ORDERS}/o-{unique_id}/refunds", json={"amount": 20})
    assert refunded.status_code == 201, refunded.text

    data = await data_of(tenant, customer_id=unique_id)
    assert set(data) == {
        "customer", "transactions", "pending_credits", "customer_rewards", "orders", "refunds",
        "actions", "referral",
    }  # fmt: skip
    # The customer as GET /api/v1/public/customers shows it.
    assert data["customer"] == await tenant.customer(unique_id)
    assert data["customer"]["email"] == email
    # Every ledger entry as the activity log shows it (newest first).
    log = await tenant.get(
        f"{CUSTOMERS}/transactions", params={"customer_id": unique_id, "limit": 100}
    )
    assert data["transactions"] == log.json()["data"]
    kinds = [entry["kind"] for entry in data["transactions"]]
    assert kinds == ["earn", "earn", "redeem", "adjustment"]  # referral welcome, newsletter
    assert data["transactions"][-1]["internal_note"] == "welcome"
    # The order's points are held: its pending credit, reduced by the refund.
    [pending] = data["pending_credits"]
    assert (pending["points"], pending["points_cancelled"], pending["status"]) == (
        80,
        20,
        "pending",
    )
    [held] = data["customer_rewards"]
    assert (held["id"], held["status"], held["customer_id"]) == (
        redeemed["id"],
        "active",
        unique_id,
    )
    assert held["discount_code"] == redeemed["discount_code"]
    [order] = data["orders"]
    assert (order["order_id"], order["customer_id"], order["total"]) == (
        f"o-{unique_id}",
        unique_id,
        80,
    )
    assert (order["status"], order["points_pending"], order["points_cancelled"]) == (
        "partially_refunded",
        60,
        20,
    )
    assert order["pending_credit_id"] == pending["id"]
    [refund] = data["refunds"]
    assert {key: refund[key] for key in ("id", "amount", "points_cancelled", "order")} == {
        key: refunded.json()["data"][key] for key in ("id", "amount", "points_cancelled", "order")
    }
    [action] = data["actions"]
    assert (action["action"], action["points"]) == ("newsletter", 15)
    assert action["transaction_id"] == newsletter.json()["data"]["transaction_id"]
    assert data["referral"] == {
        "referral_code": own_code["data"]["referral_code"],
        "referred_by": referrer,
        "referral_completed_at": data["referral"]["referral_completed_at"],
        "referred_completed": 0,
    }
    assert data["referral"]["referral_completed_at"] is not None
    # By email too, the same document.
    assert await data_of(tenant, customer_email=email.upper()) == data


async def test_a_new_customer_has_an_empty_document(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    data = await data_of(tenant, customer_id=unique_id)
    for section in ("transactions", "pending_credits", "customer_rewards", "orders", "refunds",
                    "actions"):  # fmt: skip
        assert data[section] == []
    # Reading it draws no referral code (an access request writes nothing).
    assert data["referral"] == {
        "referral_code": None,
        "referred_by": None,
        "referral_completed_at": None,
        "referred_completed": 0,
    }


async def test_unknown_and_erased_customers_answer_404(tenant: Tenant, unique_id: str) -> None:
    unknown = await tenant.get(DATA, params={"customer_id": unique_id})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "customer_not_found")
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    erased = await tenant.client.delete(
        CUSTOMERS, params={"customer_id": unique_id}, headers=tenant.headers
    )
    assert erased.status_code == 204
    for params in ({"customer_id": unique_id}, {"customer_email": f"{unique_id}@example.com"}):
        assert (await tenant.get(DATA, params=params)).status_code == 404
    both = await tenant.get(DATA, params={"customer_id": "a", "customer_email": "a@example.com"})
    assert both.status_code == 422


async def test_access_needs_customers_read(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    token = await tenant.new_key("transactions:read")
    refused = await tenant.client.get(
        DATA, params={"customer_id": unique_id}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403
