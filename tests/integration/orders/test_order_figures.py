"""An order's figures say what the ledger did: where its points are, at every moment.

points_earned = points_pending + points_released + points_cancelled, and refunds
remove only out of the released points. Holds cancelled by hand count as cancelled
on their order; a refund after that takes nothing.
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.support.tenant import Tenant

RULES = "/api/v1/earn-rules"
ORDERS = "/api/v1/public/orders"
PENDING = "/api/v1/public/customers/pending"


async def place(tenant: Tenant, order_id: str, customer_id: str, total: int) -> httpx.Response:
    body = {"order_id": order_id, "customer_id": customer_id, "total": total, "currency": "USD"}
    return await tenant.post(ORDERS, json=body)


async def figures(tenant: Tenant, order_id: str, customer_id: str, total: int) -> dict[str, Any]:
    """The order as it is now (posting it again changes nothing and answers it)."""
    response = await place(tenant, order_id, customer_id, total)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def check(order: dict[str, Any]) -> None:
    assert order["points_earned"] == (
        order["points_pending"] + order["points_released"] + order["points_cancelled"]
    ), order
    assert 0 <= order["points_removed"] <= order["points_released"], order


async def test_a_hold_cancelled_by_hand_is_cancelled_not_removed(
    tenant: Tenant, unique_id: str
) -> None:
    rule = {"type": "purchase", "points_per_currency_unit": 1, "pending_days": 3}
    assert (await tenant.post(RULES, json=rule)).status_code == 201
    placed = (await place(tenant, f"{unique_id}-o1", unique_id, 20)).json()["data"]
    assert (placed["points_earned"], placed["points_pending"]) == (20, 20)
    cancel = await tenant.post(f"{PENDING}/{placed['pending_credit_id']}/cancel")
    assert cancel.status_code == 200, cancel.text
    assert (cancel.json()["data"]["points"], cancel.json()["data"]["points_cancelled"]) == (20, 20)
    refunded = await tenant.post(f"{ORDERS}/{unique_id}-o1/refunds", json={})
    assert refunded.status_code == 201, refunded.text
    data = refunded.json()["data"]
    assert (data["points_removed"], data["points_cancelled"], data["shortfall"]) == (0, 0, 0)
    for order in (data["order"], await figures(tenant, f"{unique_id}-o1", unique_id, 20)):
        assert (order["points_removed"], order["points_cancelled"]) == (0, 20)
        assert (order["points_pending"], order["points_released"]) == (0, 0)
        check(order)


async def test_a_pending_credit_keeps_its_points_and_records_what_was_taken_off(
    tenant: Tenant, unique_id: str
) -> None:
    rule = {"type": "purchase", "points_per_currency_unit": 1, "pending_days": 3}
    assert (await tenant.post(RULES, json=rule)).status_code == 201
    for order_id in ("partial", "full"):
        assert (await place(tenant, f"{unique_id}-{order_id}", unique_id, 20)).status_code == 201
    partial = await tenant.post(f"{ORDERS}/{unique_id}-partial/refunds", json={"amount": 5})
    full = await tenant.post(f"{ORDERS}/{unique_id}-full/refunds", json={})
    assert (
        partial.json()["data"]["points_cancelled"],
        full.json()["data"]["points_cancelled"],
    ) == (
        5,
        20,
    )
    credits: dict[str, dict[str, Any]] = {}
    for status in ("pending", "cancelled"):
        listed = await tenant.get(PENDING, params={"customer_id": unique_id, "status": status})
        assert listed.status_code == 200, listed.text
        credits.update({credit["id"]: credit for credit in listed.json()["data"]})
    for order_id, status, cancelled in (("partial", "pending", 5), ("full", "cancelled", 20)):
        order = await figures(tenant, f"{unique_id}-{order_id}", unique_id, 20)
        credit = credits[order["pending_credit_id"]]
        # One representation: the points it was created with, and what was taken off.
        assert (credit["status"], credit["points"], credit["points_cancelled"]) == (
            status,
            20,
            cancelled,
        )
        assert order["points_cancelled"] == cancelled
        check(order)
    customer = await tenant.customer(unique_id)
    assert customer["pending_points"] == 15


async def test_order_figures_add_up_under_random_work(tenant: Tenant, unique_id: str) -> None:
    """Orders, holds on and off, hand cancels, approvals, partial and full refunds in
    random order: every order's identity holds after every step, and the customers'
    balances and pending points are exactly what their orders say."""
    response = await tenant.post(
        RULES, json={"type": "purchase", "points_per_currency_unit": 1, "pending_days": 3}
    )
    rule = response.json()["data"]
    rng = random.Random(unique_id)
    customers = [f"{unique_id}-{n}" for n in range(2)]
    for customer_id in customers:
        await tenant.enrol(customer_id)
    orders: dict[str, tuple[str, int]] = {}  # order_id -> (customer, total)
    for step in range(50):
        action = rng.choice(["place", "place", "hold", "cancel", "approve", "refund", "refund"])
        if action == "place" or not orders:
            order_id, customer_id = f"{unique_id}-{step}", rng.choice(customers)
            total = rng.randint(1, 40)
            assert (await place(tenant, order_id, customer_id, total)).status_code == 201
            orders[order_id] = (customer_id, total)
        elif action == "hold":  # switch the holding period on or off (0: no hold)
            days = rng.choice([0, 3])
            patched = await tenant.client.patch(
                f"{RULES}/{rule['id']}", json={"pending_days": days}, headers=tenant.headers
            )
            assert patched.status_code == 200, patched.text
        else:
            order_id = rng.choice(sorted(orders))
            customer_id, total = orders[order_id]
            order = await figures(tenant, order_id, customer_id, total)
            credit = order["pending_credit_id"]
            if action == "cancel" and credit:
                cancelled = await tenant.post(f"{PENDING}/{credit}/cancel")
                assert cancelled.status_code in (200, 409), cancelled.text
            elif action == "approve" and credit:
                approved = await tenant.post(
                    f"{PENDING}/approve", params={"customer_id": customer_id},
                    json={"pending_id": credit},
                )  # fmt: skip
                assert approved.status_code in (200, 409), approved.text
            elif action == "refund":
                body = rng.choice([{}, {"amount": rng.randint(1, total)}])
                refunded = await tenant.post(f"{ORDERS}/{order_id}/refunds", json=body)
                assert refunded.status_code in (201, 422), refunded.text
        expected = {c: {"balance": 0.0, "pending": 0.0} for c in customers}
        for order_id, (customer_id, total) in orders.items():
            order = await figures(tenant, order_id, customer_id, total)
            check(order)
            expected[customer_id]["balance"] += order["points_released"] - order["points_removed"]
            expected[customer_id]["pending"] += order["points_pending"]
        for customer_id in customers:
            seen = await tenant.customer(customer_id)
            assert (seen["points_balance"], seen["pending_points"]) == (
                expected[customer_id]["balance"],
                expected[customer_id]["pending"],
            ), (step, action)
