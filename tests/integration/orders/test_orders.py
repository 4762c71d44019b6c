"""Earn rules, orders and refunds."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from loyalty.db.types import utc_now
from tests.support.rewards import FIVE_OFF, create, funded, redeem
from tests.support.tenant import Tenant, event_types

RULES = "/api/v1/earn-rules"
ORDERS = "/api/v1/public/orders"
TRANSACTIONS = "/api/v1/public/customers/transactions"


async def purchase_rule(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await tenant.post(
        RULES, json={"type": "purchase", "points_per_currency_unit": 1, **fields}
    )
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()["data"]
    return rule


async def order(
    tenant: Tenant, order_id: str, customer_id: str, total: float, **fields: Any
) -> httpx.Response:
    return await tenant.post(
        ORDERS,
        json={
            "order_id": order_id,
            "customer_id": customer_id,
            "total": total,
            "currency": "USD",
            **fields,
        },
    )


async def refund(tenant: Tenant, order_id: str, **body: Any) -> httpx.Response:
    return await tenant.post(f"{ORDERS}/{order_id}/refunds", json=body)


async def log(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await tenant.get(TRANSACTIONS, params={"customer_id": customer_id})
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


async def test_earn_rules_are_one_per_type_and_checked(tenant: Tenant) -> None:
    rule = await purchase_rule(tenant, rounding="nearest", min_order_total=10, pending_days=14)
    assert (rule["points_per_currency_unit"], rule["rounding"], rule["points"]) == (1, "nearest", 0)
    again = await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 2})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "earn_rule_exists"

    newsletter = await tenant.post(RULES, json={"type": "newsletter", "points": 50})
    assert newsletter.status_code == 201, newsletter.text
    assert newsletter.json()["data"]["max_per_customer"] == 1  # once per customer

    for body, field in (
        ({"type": "purchase"}, "points_per_currency_unit"),
        ({"type": "sms"}, "points"),
        ({"type": "sms", "points": 5, "pending_days": 3}, "pending_days"),
        ({"type": "sms", "points": 5, "referee_points": 3}, "referee_points"),
        ({"type": "sms", "points": 5.5}, "points"),
        ({"type": "sms", "points": 5, "max_per_customer": 0}, "max_per_customer"),
        ({"type": "unknown", "points": 5}, "type"),
    ):
        response = await tenant.post(RULES, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field

    changed = await tenant.client.patch(
        f"{RULES}/{rule['id']}", json={"points_per_currency_unit": 2.5}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["points_per_currency_unit"] == 2.5
    listed = (await tenant.get(RULES)).json()["data"]
    assert {item["type"] for item in listed} == {"purchase", "newsletter"}
    missing = await tenant.get(f"{RULES}/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "earn_rule.created" in await event_types(tenant)


@pytest.mark.parametrize("no_hold", [0, None])
async def test_a_purchase_rule_without_a_holding_period_credits_at_once(
    tenant: Tenant, unique_id: str, no_hold: int | None
) -> None:
    for body in ({"pending_days": -1}, {"pending_days": 3651}):
        refused = await tenant.post(
            RULES, json={"type": "purchase", "points_per_currency_unit": 1, **body}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"] == "pending_days"
    rule = await purchase_rule(tenant, pending_days=no_hold)  # 201
    assert rule["pending_days"] is None  # no hold, whether sent as 0 or null
    placed = (await order(tenant, "H-1", unique_id, 40)).json()["data"]
    assert (placed["points_balance"], placed["pending_points"]) == (40, 0)
    assert (placed["pending_credit_id"], placed["transaction_id"] is not None) == (None, True)
    estimate = await tenant.post(f"{ORDERS}/estimate", json={"total": 40})
    assert estimate.json()["data"]["pending_days"] is None

    async def patch(pending_days: int | None) -> httpx.Response:
        return await tenant.client.patch(
            f"{RULES}/{rule['id']}", json={"pending_days": pending_days}, headers=tenant.headers
        )

    held = await patch(7)
    assert (held.status_code, held.json()["data"]["pending_days"]) == (200, 7)
    placed = (await order(tenant, "H-2", unique_id, 10)).json()["data"]
    assert (placed["points_balance"], placed["pending_points"]) == (40, 10)
    refused = await patch(-1)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "pending_days"
    cleared = await patch(no_hold)
    assert (cleared.status_code, cleared.json()["data"]["pending_days"]) == (200, None)
    placed = (await order(tenant, "H-3", unique_id, 5)).json()["data"]
    assert (placed["points_balance"], placed["pending_points"]) == (45, 10)
    assert placed["pending_credit_id"] is None


async def test_an_action_rule_takes_a_holding_period_of_0_as_none(tenant: Tenant) -> None:
    response = await tenant.post(RULES, json={"type": "sms", "points": 5, "pending_days": 0})
    assert response.status_code == 201, response.text
    assert response.json()["data"]["pending_days"] is None


async def test_an_order_earns_once(tenant: Tenant, unique_id: str) -> None:
    rule = await purchase_rule(tenant, points_per_currency_unit=2, points=5)
    response = await order(tenant, "1001", unique_id, 25.75, email="new@example.com")
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert (data["points_earned"], data["points_balance"], data["status"]) == (56, 56, "placed")
    assert (data["earn_rule_id"], data["not_earned_reason"]) == (rule["id"], None)
    customer = await tenant.customer(unique_id)  # enrolled by the order
    assert (customer["email"], customer["total_spent"], customer["lifetime_points"]) == (
        "new@example.com",
        25.75,
        56,
    )
    entry = (await log(tenant, unique_id))[0]
    assert (entry["kind"], entry["points"], entry["earn_rule_id"]) == ("earn", 56, rule["id"])
    assert entry["transaction_id"] == data["transaction_id"]

    again = await order(tenant, "1001", unique_id, 25.75, email="new@example.com")
    assert again.status_code == 200
    assert again.json()["data"]["id"] == data["id"]
    conflict = await order(tenant, "1001", unique_id, 30)
    assert conflict.status_code == 422
    assert conflict.json()["error"]["code"] == "order_conflict"
    assert len(await log(tenant, unique_id)) == 1
    assert (await tenant.customer(unique_id))["total_spent"] == 25.75
    assert "order.placed" in await event_types(tenant)


async def test_concurrent_posts_of_one_order_earn_once(tenant: Tenant, unique_id: str) -> None:
    await purchase_rule(tenant)
    await tenant.enrol(unique_id)
    responses = await asyncio.gather(*(order(tenant, "A-1", unique_id, 40) for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["total_spent"]) == (40, 40)


@pytest.mark.parametrize(("rounding", "points"), [("down", 10), ("nearest", 11), ("up", 11)])
async def test_rounding(tenant: Tenant, unique_id: str, rounding: str, points: int) -> None:
    await purchase_rule(tenant, points_per_currency_unit=0.5, rounding=rounding)
    response = await order(tenant, "R-1", unique_id, 21.5)  # 10.75 points before rounding
    assert response.json()["data"]["points_earned"] == points


async def test_who_and_what_does_not_earn(tenant: Tenant, unique_id: str) -> None:
    first = await order(tenant, "N-1", unique_id, 50)
    assert first.status_code == 201  # no purchase rule: recorded, nothing earned
    assert first.json()["data"]["not_earned_reason"] == "no_purchase_rule"
    rule = await purchase_rule(tenant, min_order_total=20)
    below = await order(tenant, "N-2", unique_id, 19.99)
    assert below.json()["data"]["not_earned_reason"] == "below_minimum"
    await tenant.client.patch(
        "/api/v1/public/customers/status",
        params={"customer_id": unique_id},
        json={"status": "excluded"},
        headers=tenant.headers,
    )
    excluded = await order(tenant, "N-3", unique_id, 100)
    assert excluded.json()["data"]["not_earned_reason"] == "customer_excluded"
    await tenant.client.patch(
        f"{RULES}/{rule['id']}", json={"active": False}, headers=tenant.headers
    )
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["total_spent"]) == (0, 169.99)


async def test_bad_orders(tenant: Tenant, unique_id: str) -> None:
    for body, field in (
        ({"total": -1}, "total"),
        ({"total": 1.005}, "total"),
        ({"currency": "XYZ"}, "currency"),
        ({"currency": "EUR"}, "currency"),
        ({"order_id": " "}, "order_id"),
        ({"placed_at": "2999-01-01T00:00:00Z"}, "placed_at"),
    ):
        payload = {"order_id": "B-1", "customer_id": unique_id, "total": 10, "currency": "USD"}
        response = await tenant.post(ORDERS, json={**payload, **body})
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field
    lookup = await tenant.get("/api/v1/public/customers", params={"customer_id": unique_id})
    assert lookup.status_code == 404  # nothing was written, not even the enrolment


async def test_the_tier_multiplier_applies(tenant: Tenant, unique_id: str) -> None:
    created = await tenant.post(
        "/api/v1/tiers", json={"name": "Member", "threshold": 0, "multiplier": 1.5}
    )
    assert created.status_code == 201, created.text
    await purchase_rule(tenant)
    await tenant.enrol(unique_id)
    response = await order(tenant, "M-1", unique_id, 10)
    assert response.json()["data"]["points_earned"] == 15


async def test_refunds_take_points_back_in_proportion(tenant: Tenant, unique_id: str) -> None:
    await purchase_rule(tenant)
    await order(tenant, "F-1", unique_id, 100)
    half = await refund(tenant, "F-1", amount=50)
    assert half.status_code == 201, half.text
    data = half.json()["data"]
    assert (data["points_removed"], data["shortfall"], data["points_balance"]) == (50, 0, 50)
    assert data["order"]["status"] == "partially_refunded"
    customer = await tenant.customer(unique_id)
    assert (customer["lifetime_points"], customer["total_spent"]) == (50, 50)
    entry = (await log(tenant, unique_id))[0]
    assert (entry["kind"], entry["points"], entry["apply_to_lifetime"]) == ("refund", -50, True)

    rest = await refund(tenant, "F-1")
    assert rest.json()["data"]["points_removed"] == 50
    assert rest.json()["data"]["order"]["status"] == "refunded"
    over = await refund(tenant, "F-1", amount=1)
    assert over.status_code == 422
    assert over.json()["error"]["code"] == "refund_exceeds_order"
    unknown = await refund(tenant, "nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "order_not_found"
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_a_refund_never_overdraws(tenant: Tenant, unique_id: str) -> None:
    await purchase_rule(tenant)
    await order(tenant, "S-1", unique_id, 100)
    assert (await tenant.adjust(unique_id, -70)).status_code == 201  # spent 70 of them
    response = await refund(tenant, "S-1")
    data = response.json()["data"]
    assert (data["points_removed"], data["shortfall"], data["points_balance"]) == (30, 70, 0)
    too_much = await refund(tenant, "S-1", amount=5)
    assert too_much.status_code == 422


async def test_refunds_of_pending_points_cancel_the_hold(tenant: Tenant, unique_id: str) -> None:
    await purchase_rule(tenant, pending_days=30)
    placed = (await order(tenant, "P-1", unique_id, 80)).json()["data"]
    assert placed["pending_credit_id"] is not None
    assert (placed["points_balance"], placed["pending_points"]) == (0, 80)
    part = (await refund(tenant, "P-1", amount=20)).json()["data"]
    assert (part["points_cancelled"], part["pending_points"]) == (20, 60)
    full = (await refund(tenant, "P-1")).json()["data"]
    assert (full["points_cancelled"], full["pending_points"], full["points_balance"]) == (60, 0, 0)
    pending = await tenant.get(
        "/api/v1/public/customers/pending", params={"customer_id": unique_id}
    )
    assert pending.json()["data"][0]["status"] == "cancelled"
    assert (await tenant.customer(unique_id))["lifetime_points"] == 0


async def test_an_order_marks_its_discount_code_used(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, five["id"])).json()["data"]
    response = await order(
        tenant, "C-1", unique_id, 30, discount_codes=[reward["discount_code"].lower()]
    )
    assert response.status_code == 201, response.text
    fetched = await tenant.get(f"/api/v1/public/customers/rewards/{reward['id']}")
    assert (fetched.json()["data"]["status"], fetched.json()["data"]["order_id"]) == ("used", "C-1")


ACTIONS = "/api/v1/public/customers/actions"


async def act(tenant: Tenant, customer_id: str, action: str, **kwargs: Any) -> httpx.Response:
    return await tenant.post(
        ACTIONS, params={"customer_id": customer_id}, json={"action": action}, **kwargs
    )


async def test_an_action_is_rewarded_once(tenant: Tenant, unique_id: str) -> None:
    rule = (await tenant.post(RULES, json={"type": "newsletter", "points": 50})).json()["data"]
    await tenant.enrol(unique_id)
    first = await act(tenant, unique_id, "newsletter")
    assert first.status_code == 201, first.text
    data = first.json()["data"]
    assert (data["rewarded"], data["points"], data["points_balance"]) == (True, 50, 50)
    assert data["earn_rule_id"] == rule["id"]
    second = await act(tenant, unique_id, "newsletter")
    assert second.status_code == 200
    assert second.json()["data"] == {**second.json()["data"], "rewarded": False,
                                     "reason": "limit_reached", "points": 0}  # fmt: skip
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["rewarded_actions"]) == (50, ["newsletter"])
    entry = (await log(tenant, unique_id))[0]
    assert (entry["description"], entry["earn_rule_id"]) == (
        "Reward: newsletter signup",
        rule["id"],
    )
    assert "customer.action_rewarded" in await event_types(tenant)


async def test_concurrent_actions_respect_the_limit(tenant: Tenant, unique_id: str) -> None:
    await tenant.post(RULES, json={"type": "follow_instagram", "points": 10, "max_per_customer": 3})
    await tenant.enrol(unique_id)
    responses = await asyncio.gather(
        *(act(tenant, unique_id, "follow_instagram") for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201] * 3
    assert (await tenant.customer(unique_id))["points_balance"] == 30


async def test_actions_that_are_not_rewarded(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    none = await act(tenant, unique_id, "sms")
    assert (none.status_code, none.json()["data"]["reason"]) == (200, "no_rule")
    rule = (await tenant.post(RULES, json={"type": "sms", "points": 5})).json()["data"]
    await tenant.client.patch(
        f"{RULES}/{rule['id']}", json={"active": False}, headers=tenant.headers
    )
    inactive = await act(tenant, unique_id, "sms")
    assert inactive.json()["data"]["reason"] == "rule_inactive"
    await tenant.client.patch(
        f"{RULES}/{rule['id']}", json={"active": True}, headers=tenant.headers
    )
    await tenant.client.patch(
        "/api/v1/public/customers/status",
        params={"customer_id": unique_id},
        json={"status": "inactive"},
        headers=tenant.headers,
    )
    resting = await act(tenant, unique_id, "sms")
    assert resting.json()["data"]["reason"] == "customer_inactive"
    for action in ("birthday", "referral", "purchase", "dance"):
        response = await act(tenant, unique_id, action)
        assert response.status_code == 422, action
    unknown = await act(tenant, "nobody-" + unique_id, "sms")
    assert unknown.status_code == 404
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_a_frequency_limit_opens_again(tenant: Tenant, unique_id: str, clock: Any) -> None:
    await tenant.post(
        RULES, json={"type": "share_facebook", "points": 7, "max_per_customer": 1, "period_days": 7}
    )
    await tenant.enrol(unique_id)
    assert (await act(tenant, unique_id, "share_facebook")).status_code == 201
    assert (await act(tenant, unique_id, "share_facebook")).status_code == 200
    clock.advance(days=8)
    assert (await act(tenant, unique_id, "share_facebook")).status_code == 201
    assert (await tenant.customer(unique_id))["points_balance"] == 14


async def test_birthdays_are_rewarded_once_a_year(
    tenant: Tenant, unique_id: str, clock: Any, run_jobs: Any
) -> None:
    today = utc_now().date()
    if (today.month, today.day) == (2, 29):
        pytest.skip("the yearly step below needs a date that recurs")
    await tenant.post(RULES, json={"type": "birthday", "points": 100})
    birthday = today.replace(year=1990)
    tomorrow = today + timedelta(days=1)
    await tenant.enrol(unique_id, date_of_birth=birthday.isoformat())
    await tenant.enrol(unique_id + "-t", date_of_birth=tomorrow.replace(year=1990).isoformat())
    await tenant.enrol(unique_id + "-x", date_of_birth=birthday.isoformat())
    await tenant.client.patch(
        "/api/v1/public/customers/status",
        params={"customer_id": unique_id + "-x"},
        json={"status": "excluded"},
        headers=tenant.headers,
    )
    await asyncio.gather(run_jobs(), run_jobs())
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["rewarded_actions"]) == (100, ["birthday"])
    assert (await log(tenant, unique_id))[0]["description"] == "Happy birthday!"
    assert (await tenant.customer(unique_id + "-t"))["points_balance"] == 0
    assert (await tenant.customer(unique_id + "-x"))["points_balance"] == 0

    clock.advance(days=(today.replace(year=today.year + 1) - today).days)
    await run_jobs()
    assert (await tenant.customer(unique_id))["points_balance"] == 200


async def test_an_estimate_writes_nothing(tenant: Tenant, unique_id: str) -> None:
    guest = await tenant.post(f"{ORDERS}/estimate", json={"total": 10})
    assert guest.json()["data"]["not_earned_reason"] == "no_purchase_rule"
    rule = await purchase_rule(tenant, points_per_currency_unit=3, pending_days=14)
    await tenant.post("/api/v1/tiers", json={"name": "Member", "threshold": 0, "multiplier": 2})
    await tenant.enrol(unique_id)
    for body, points, multiplier in (
        ({"total": 10.5}, 31, 1),
        ({"total": 10.5, "customer_id": unique_id, "currency": "USD"}, 63, 2),
    ):
        response = await tenant.post(f"{ORDERS}/estimate", json=body)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert (data["points"], data["multiplier"], data["pending_days"]) == (
            points,
            multiplier,
            14,
        )
        assert data["earn_rule_id"] == rule["id"]
    missing = await tenant.post(f"{ORDERS}/estimate", json={"total": 1, "customer_id": "nobody"})
    assert missing.status_code == 404
    euro = await tenant.post(f"{ORDERS}/estimate", json={"total": 1, "currency": "EUR"})
    assert euro.status_code == 422
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def referral_code(tenant: Tenant, customer_id: str) -> str:
    response = await tenant.get(
        "/api/v1/public/customers/referral", params={"customer_id": customer_id}
    )
    assert response.status_code == 200, response.text
    code: str = response.json()["data"]["referral_code"]
    return code


async def test_a_referral_rewards_both_on_the_first_order(tenant: Tenant, unique_id: str) -> None:
    await purchase_rule(tenant)
    rule = await tenant.post(RULES, json={"type": "referral", "points": 200, "referee_points": 50})
    assert rule.status_code == 201, rule.text
    referrer = unique_id + "-r"
    await tenant.enrol(referrer)
    code = await referral_code(tenant, referrer)
    assert await referral_code(tenant, referrer) == code  # drawn once

    first = await order(tenant, "REF-1", unique_id, 10, referral_code=code.lower())
    assert first.status_code == 201, first.text
    assert first.json()["data"]["points_balance"] == 60  # 10 earned + 50 welcome
    second = await order(tenant, "REF-2", unique_id, 10)
    assert second.json()["data"]["points_balance"] == 70  # only the first order refers
    sponsor = await tenant.customer(referrer)
    assert (sponsor["points_balance"], sponsor["referred_completed"]) == (200, 1)
    state = (
        await tenant.get("/api/v1/public/customers/referral", params={"customer_id": unique_id})
    ).json()["data"]
    assert state["referred_by"] == referrer
    assert state["referral_completed_at"] is not None
    assert "referral.completed" in await event_types(tenant)


async def test_referral_codes_are_checked(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    own = await referral_code(tenant, unique_id)
    for code, message in ((own, "own"), ("NOPE-NOPE", "not a referral code")):
        response = await tenant.post(
            "/api/v1/public/customers", json={"customer_id": unique_id, "referral_code": code}
        )
        assert response.status_code == 422
        assert message in response.json()["error"]["details"][0]["message"]
    # A customer who has ordered can no longer be referred.
    await order(tenant, "O-1", unique_id + "-b", 5)
    other = await referral_code(tenant, unique_id)
    late = await order(tenant, "O-2", unique_id + "-b", 5, referral_code=other)
    assert late.status_code == 201
    state = (
        await tenant.get(
            "/api/v1/public/customers/referral", params={"customer_id": unique_id + "-b"}
        )
    ).json()["data"]
    assert state["referred_by"] is None
    assert (await tenant.customer(unique_id))["referred_completed"] == 0
