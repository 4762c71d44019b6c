"""Points over time against a model: holds, approvals, cancellations, expiry and
tiers, with the application's clock moved by the test.

A hypothesis state machine drives the API in process (the clock is this
process's) and keeps a day-by-day model of each customer: available balance,
pending credits, lifetime, expired points, the lots that will expire (fixed
policy, 10 days) and the tier (Silver at 300 lifetime points, Gold at 800
kept 5 days by retention). Steps credit, debit (with or without lifetime),
hold for N days, approve one or all, cancel, place orders (1 point per unit,
held 3 days; each posted twice, earning once), refund part or all of them
(points taken back from the hold, else from the balance, never below zero),
and move the clock N days then run the scheduled jobs. After every step, for
every customer: the balances, the next lot to expire, the tier, the pending
credits and the activity log are what the model says.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import TestClient

from loyalty.app import create_app
from loyalty.db.types import set_clock_offset
from loyalty.jobs import run_due_jobs
from loyalty.settings import Settings
from tests.support.server import cli_json

TRANSACTIONS = "/api/v1/public/customers/transactions"
PENDING = "/api/v1/public/customers/pending"
EXPIRY_DAYS = 10
# The purchase rule: 1 point per currency unit, rounded down, held this many days.
ORDER_PENDING_DAYS = 3
# (name, threshold, retention days)
TIERS = [("Silver", 300, None), ("Gold", 800, 5)]
EXAMPLES = 10
STEPS = 30


@dataclass
class Held:
    id: str
    customer_id: str
    points: int
    available_day: int
    status: str = "pending"


@dataclass
class ModelOrder:
    order_id: str
    customer_id: str
    total: int
    earned: int
    hold: Held
    refunded: int = 0
    removed: int = 0


@dataclass
class ModelCustomer:
    customer_id: str
    balance: int = 0
    lifetime: int = 0
    expired: int = 0
    # Open lots in creation order (= expiry order): [points left, expiry day, stamp];
    # lots opened by one operation share their expiry moment (the same stamp).
    lots: list[list[int]] = field(default_factory=list)
    holds: list[Held] = field(default_factory=list)
    tier: str | None = None
    tier_expires_day: int | None = None
    transaction_ids: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(held.points for held in self.holds if held.status == "pending")


def qualified(lifetime: int) -> str | None:
    reached = [name for name, threshold, _ in TIERS if lifetime >= threshold]
    return reached[-1] if reached else None


def rank(tier: str | None) -> int:
    names = [name for name, _, _ in TIERS]
    return -1 if tier is None else names.index(tier)


class LifecycleModel(RuleBasedStateMachine):
    client: TestClient[Any]
    app_settings: Settings
    counts: dict[str, int]
    steps_run = 0

    customers = Bundle("customers")
    holds = Bundle("holds")
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, ModelCustomer] = {}
        self.run_id = uuid.uuid4().hex[:8]
        self.day = 0
        self.stamp = 0
        set_clock_offset(timedelta(0))

    def teardown(self) -> None:
        set_clock_offset(timedelta(0))

    # --- the model's rules ---------------------------------------------------------

    def retier(self, customer: ModelCustomer) -> None:
        """The tier rule: upgrade at once; downgrade after the current tier's retention."""
        target = qualified(customer.lifetime)
        if customer.tier is None or rank(target) >= rank(customer.tier):
            customer.tier, customer.tier_expires_day = target, None
            return
        retention = {name: days for name, _, days in TIERS}[customer.tier]
        if retention is None:
            customer.tier, customer.tier_expires_day = target, None
        elif customer.tier_expires_day is None:
            customer.tier_expires_day = self.day + retention
        elif customer.tier_expires_day <= self.day:
            customer.tier, customer.tier_expires_day = target, None

    def credited(self, customer: ModelCustomer, points: int, lifetime: bool) -> None:
        customer.balance += points
        if lifetime:
            customer.lifetime += points
        customer.lots.append([points, self.day + EXPIRY_DAYS, self.stamp])

    def debited(self, customer: ModelCustomer, points: int, lifetime: bool) -> None:
        customer.balance -= points
        if lifetime:
            customer.lifetime = max(customer.lifetime - points, 0)
        left = points
        for lot in customer.lots:
            taken = min(lot[0], left)
            lot[0] -= taken
            left -= taken
        customer.lots = [lot for lot in customer.lots if lot[0] > 0]

    # --- operations ------------------------------------------------------------------

    @rule(target=customers)
    def enrol(self) -> Any:
        customer_id = f"{self.run_id}-{len(self.model)}"
        response = self.client.post("/api/v1/public/customers", json={"customer_id": customer_id})
        assert response.status_code == 201, response.text
        self.model[customer_id] = ModelCustomer(customer_id)
        return customer_id

    @initialize(target=customers)
    def a_customer_whose_points_age(self) -> Any:
        """Every run starts with each kind of work once: a credit that expires, an order
        held then released, a partial refund of a released order; random steps follow."""
        customer_id = self.enrol()
        self.credit(customer_id, 50)
        placed = self.place_order(customer_id, 40)
        self.time_passes(ORDER_PENDING_DAYS)
        self.refund(placed, 50, everything=False)
        self.time_passes(EXPIRY_DAYS)
        return customer_id

    @rule(customer=customers, points=st.integers(min_value=1, max_value=400))
    def credit(self, customer: str, points: int) -> None:
        self.stamp += 1
        response = self.client.post(
            TRANSACTIONS, params={"customer_id": customer},
            json={"points": points, "description": "credit"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        model = self.model[customer]
        self.credited(model, points, lifetime=True)
        model.transaction_ids.append(response.json()["data"]["transaction_id"])
        self.retier(model)

    @rule(
        customer=customers, points=st.integers(min_value=1, max_value=400), lifetime=st.booleans()
    )
    def debit(self, customer: str, points: int, lifetime: bool) -> None:
        response = self.client.post(
            TRANSACTIONS, params={"customer_id": customer},
            json={"points": -points, "description": "debit", "apply_to_lifetime": lifetime},
        )  # fmt: skip
        model = self.model[customer]
        if points > model.balance:  # pending points are not spendable
            assert response.status_code == 422, response.text
            return
        assert response.status_code == 201, response.text
        self.debited(model, points, lifetime)
        model.transaction_ids.append(response.json()["data"]["transaction_id"])
        self.retier(model)

    @rule(
        target=holds,
        customer=customers,
        points=st.integers(min_value=1, max_value=400),
        days=st.integers(min_value=1, max_value=15),
    )
    def hold(self, customer: str, points: int, days: int) -> Any:
        response = self.client.post(
            TRANSACTIONS, params={"customer_id": customer},
            json={"points": points, "description": "order", "pending_days": days},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        held = Held(data["id"], customer, points, self.day + days)
        model = self.model[customer]
        model.holds.append(held)
        assert (data["status"], data["pending_points"]) == ("pending", model.pending)
        self.counts["hold"] += 1
        return held

    def _release(self, model: ModelCustomer, held: Held, transaction_id: str) -> None:
        held.status = "released"
        self.credited(model, held.points, lifetime=True)
        model.transaction_ids.append(transaction_id)

    @rule(held=holds)
    def approve_one(self, held: Held) -> None:
        self.stamp += 1
        response = self.client.post(
            f"{PENDING}/approve", params={"customer_id": held.customer_id},
            json={"pending_id": held.id},
        )  # fmt: skip
        if held.status != "pending":
            assert response.status_code == 409, response.text
            assert response.json()["error"]["details"]["status"] == held.status
            return
        assert response.status_code == 200, response.text
        released = response.json()["data"]["released"]
        assert [item["id"] for item in released] == [held.id]
        model = self.model[held.customer_id]
        self._release(model, held, released[0]["transaction_id"])
        self.retier(model)
        self.counts["approve"] += 1

    @rule(customer=customers)
    def approve_all(self, customer: str) -> None:
        self.stamp += 1
        response = self.client.post(f"{PENDING}/approve", params={"customer_id": customer})
        assert response.status_code == 200, response.text
        model = self.model[customer]
        waiting = sorted(
            (held for held in model.holds if held.status == "pending"),
            key=lambda held: (held.available_day, held.id),
        )
        released = response.json()["data"]["released"]
        assert sorted(item["id"] for item in released) == sorted(held.id for held in waiting)
        by_id = {item["id"]: item for item in released}
        # Released in due order, so lots keep expiry order.
        for held in sorted(waiting, key=lambda held: by_id[held.id]["transaction_id"]):
            self._release(model, held, by_id[held.id]["transaction_id"])
        self.retier(model)

    @rule(
        target=orders,
        customer=customers,
        total=st.integers(min_value=0, max_value=500),
    )
    def place_order(self, customer: str, total: int) -> Any:
        self.stamp += 1
        order_id = f"{self.run_id}-order-{self.counts['orders']}"
        response = self.client.post(
            "/api/v1/public/orders",
            json={"order_id": order_id, "customer_id": customer, "total": total,
                  "currency": "USD"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        assert data["points_earned"] == total
        self.counts["orders"] += 1
        model = self.model[customer]
        held = Held(data["pending_credit_id"] or "", customer, total, self.day + ORDER_PENDING_DAYS)
        if total:
            model.holds.append(held)
        else:
            held.status = "cancelled"  # nothing earned, nothing held
        again = self.client.post(
            "/api/v1/public/orders",
            json={"order_id": order_id, "customer_id": customer, "total": total,
                  "currency": "USD"},
        )  # fmt: skip
        assert (again.status_code, again.json()["data"]["id"]) == (200, data["id"])
        return ModelOrder(order_id, customer, total, total, held)

    @rule(order=orders, share=st.integers(min_value=1, max_value=100), everything=st.booleans())
    def refund(self, order: ModelOrder, share: int, everything: bool) -> None:
        self.stamp += 1
        refundable = order.total - order.refunded
        amount = refundable if everything else max(1, order.total * share // 100)
        body = {} if everything else {"amount": amount}
        response = self.client.post(f"/api/v1/public/orders/{order.order_id}/refunds", json=body)
        if amount > refundable or refundable == 0:
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "refund_exceeds_order"
            return
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        model = self.model[order.customer_id]
        refunded_after = order.refunded + amount
        target = (
            order.earned
            if refunded_after == order.total
            else order.earned * refunded_after // order.total
        )
        to_take = target - order.removed
        cancelled = removed = shortfall = 0
        if to_take > 0 and order.hold.status == "pending":
            cancelled = min(to_take, order.hold.points)
            order.hold.points -= cancelled
            if order.hold.points == 0:
                order.hold.status = "cancelled"
        elif to_take > 0 and order.hold.status == "released":
            removed = min(to_take, model.balance)
            shortfall = to_take - removed
            if removed:
                self.debited(model, removed, lifetime=True)
                model.transaction_ids.append(data["transaction_id"])
        assert (data["points_cancelled"], data["points_removed"], data["shortfall"]) == (
            cancelled,
            removed,
            shortfall,
        )
        order.refunded, order.removed = refunded_after, target
        self.retier(model)
        self.counts["refunds"] += 1

    @rule(held=consumes(holds))
    def cancel(self, held: Held) -> None:
        response = self.client.post(f"{PENDING}/{held.id}/cancel")
        if held.status != "pending":
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 200, response.text
        held.status = "cancelled"
        assert response.json()["data"]["pending_points"] == self.model[held.customer_id].pending
        self.counts["cancel"] += 1

    @rule(days=st.integers(min_value=1, max_value=12))
    def time_passes(self, days: int) -> None:
        self.day += days
        set_clock_offset(timedelta(days=self.day))
        portal = self.client.blocking_portal
        app = self.client.app
        portal.call(run_due_jobs, app.state.database, self.app_settings, app.state.ledger_writer)
        for model in self.model.values():
            self.stamp += 1
            due = sum(points for points, day, _ in model.lots if day <= self.day)
            if due:
                self.debited(model, due, lifetime=False)
                model.expired += due
                self.counts["expired"] += due
            for held in sorted(model.holds, key=lambda held: (held.available_day, held.id)):
                if held.status == "pending" and held.available_day <= self.day:
                    self._release(model, held, self._transaction_of(held))
                    self.counts["released"] += 1
            self.retier(model)

    def _transaction_of(self, held: Held) -> str:
        response = self.client.get(
            PENDING, params={"customer_id": held.customer_id, "status": "released", "limit": 100}
        )
        for item in response.json()["data"]:
            if item["id"] == held.id:
                transaction_id: str = item["transaction_id"]
                return transaction_id
        raise AssertionError(f"hold {held.id} was not released by the jobs")

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        LifecycleModel.steps_run += 1
        for expected in self.model.values():
            customer = self.client.get(
                "/api/v1/public/customers", params={"customer_id": expected.customer_id}
            ).json()["data"]
            assert customer["points_balance"] == expected.balance >= 0
            assert customer["pending_points"] == expected.pending
            assert customer["lifetime_points"] == expected.lifetime
            assert customer["points_expired"] == expected.expired
            first = expected.lots[0][2] if expected.lots else None
            next_lot = sum(points for points, _, stamp in expected.lots if stamp == first)
            assert customer["expiring_points"] == next_lot
            assert sum(points for points, _, _ in expected.lots) <= expected.balance
            tier = customer["tier"]["name"] if customer["tier"] else None
            assert tier == expected.tier, (customer, expected)
            assert (customer["tier_expires_at"] is None) == (expected.tier_expires_day is None)
            log = self.client.get(
                TRANSACTIONS, params={"customer_id": expected.customer_id, "limit": 100}
            ).json()["data"]
            assert sum(entry["points"] for entry in log) == expected.balance
            non_expiry = [entry["transaction_id"] for entry in log if entry["kind"] != "expire"]
            assert sorted(non_expiry) == sorted(expected.transaction_ids)
            assert -sum(e["points"] for e in log if e["kind"] == "expire") == expected.expired
            pending = self.client.get(
                PENDING,
                params={"customer_id": expected.customer_id, "status": "pending", "limit": 100},
            ).json()["data"]
            assert sorted(item["id"] for item in pending) == sorted(
                held.id for held in expected.holds if held.status == "pending"
            )


def test_points_lifecycle_against_its_model(fresh_database_url: str, tmp_path: Path) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Lifecycle shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    app_settings = dataclasses.replace(
        Settings(database_url=fresh_database_url),
        scheduler="off",
        log_level="warning",
        rate_limit_default="1000000/minute",
    )
    app = create_app(app_settings)
    headers = {"Authorization": f"Bearer {key['token']}"}
    with TestClient(app, base_url="http://loyalty.test") as client:
        client.headers.update(headers)
        policy = client.patch(
            "/api/v1/settings/program",
            json={"expiry_policy": "fixed", "expiry_days": EXPIRY_DAYS},
        )
        assert policy.status_code == 200, policy.text
        purchase = client.post(
            "/api/v1/earn-rules",
            json={"type": "purchase", "points_per_currency_unit": 1,
                  "pending_days": ORDER_PENDING_DAYS},
        )  # fmt: skip
        assert purchase.status_code == 201, purchase.text
        for name, threshold, retention in TIERS:
            created = client.post(
                "/api/v1/tiers",
                json={"name": name, "threshold": threshold, "retention_days": retention},
            )
            assert created.status_code == 201, created.text
        LifecycleModel.client = client
        LifecycleModel.app_settings = app_settings
        LifecycleModel.steps_run = 0
        LifecycleModel.counts = dict.fromkeys(
            ("hold", "approve", "cancel", "released", "expired", "orders", "refunds"), 0
        )
        try:
            run_state_machine_as_test(
                LifecycleModel,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        finally:
            set_clock_offset(timedelta(0))
    database = fresh_database_url.split(":")[0]
    counts = LifecycleModel.counts
    print(f"\nlifecycle model on {database}: {LifecycleModel.steps_run} steps checked; {counts}")
    assert LifecycleModel.steps_run > EXAMPLES
    assert counts["hold"] > 0, counts
    assert counts["released"] + counts["approve"] > 0, counts
    assert counts["expired"] > 0, counts
    assert counts["orders"] > 0, counts
    assert counts["refunds"] > 0, counts


pytestmark = pytest.mark.slow
