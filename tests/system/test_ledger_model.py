"""The ledger against a model: a hypothesis state machine over the real API.

Hypothesis runs random sequences of enrolments, credits, debits,
idempotent retries (same key with the same body, same key with another),
reward redemptions (discount codes and store credit), reverts and uses
against a ``loyalty serve`` process, and keeps a plain in-memory model of
what each customer should have. After every step, for every customer:
balance = sum of its entries, balance >= 0, lifetime, points spent and store
credit as the model says, every accepted operation is in the log exactly once
and nothing else is (so a rejected operation changed nothing), and every
customer reward is in the state the model says. Later features extend this
model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from tests.support.server import cli_json, running_server

TRANSACTIONS = "/api/v1/public/customers/transactions"
CUSTOMER_REWARDS = "/api/v1/public/customers/rewards"
# The catalogue the model redeems from: (name, type, cost, rule); store credit in cents.
CATALOGUE: list[tuple[str, str, int, dict[str, float]]] = [
    ("Small discount", "fixed_discount", 20, {"discount_value": 2}),
    ("Big discount", "percentage_discount", 150, {"discount_percentage": 15}),
    ("Store credit", "store_credit", 40, {"credit_amount": 1.25}),
]
EXAMPLES = 12
STEPS = 25


@dataclass
class ModelCustomer:
    customer_id: str
    balance: int = 0
    lifetime: int = 0
    pending: int = 0  # nothing is held yet; pending credits extend this model
    spent: int = 0
    store_credit_cents: int = 0
    transaction_ids: list[str] = field(default_factory=list)
    # customer reward id -> status
    rewards: dict[str, str] = field(default_factory=dict)


@dataclass
class CatalogueReward:
    id: str
    reward_type: str
    cost: int
    credit_cents: int


@dataclass
class HeldReward:
    id: str
    customer_id: str
    cost: int


@dataclass
class KeyedRequest:
    key: str
    customer_id: str
    body: dict[str, Any]
    status_code: int
    response: dict[str, Any]


class LedgerModel(RuleBasedStateMachine):
    client: httpx.Client
    catalogue: list[CatalogueReward]
    steps_run = 0
    # Accepted reward operations, so the run shows it exercised them.
    reward_operations: dict[str, int]

    customers = Bundle("customers")
    keyed = Bundle("keyed")
    held = Bundle("held")

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, ModelCustomer] = {}
        self.run_id = uuid.uuid4().hex[:8]

    # --- operations ---------------------------------------------------------

    @rule(target=customers)
    def enrol(self) -> Any:
        customer_id = f"{self.run_id}-{len(self.model)}"
        response = self.client.post("/api/v1/public/customers", json={"customer_id": customer_id})
        assert response.status_code == 201, response.text
        self.model[customer_id] = ModelCustomer(customer_id)
        return customer_id

    def _move(
        self, customer_id: str, points: int, lifetime: bool | None, key: str | None
    ) -> tuple[httpx.Response, dict[str, Any]]:
        body: dict[str, Any] = {"points": points, "description": f"move {points}"}
        if lifetime is not None:
            body["apply_to_lifetime"] = lifetime
        headers = {"Idempotency-Key": key} if key else {}
        response = self.client.post(
            TRANSACTIONS, params={"customer_id": customer_id}, json=body, headers=headers
        )
        customer = self.model[customer_id]
        if customer.balance + points < 0:
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "insufficient_points"
        else:
            assert response.status_code == 201, response.text
            data = response.json()["data"]
            customer.balance += points
            counts = points > 0 if lifetime is None else lifetime
            if counts:
                customer.lifetime = max(customer.lifetime + points, 0)
            customer.transaction_ids.append(data["transaction_id"])
            assert data["points_balance"] == customer.balance
        return response, body

    @rule(
        customer=customers,
        points=st.integers(min_value=1, max_value=500),
        lifetime=st.none() | st.booleans(),
    )
    def credit(self, customer: str, points: int, lifetime: bool | None) -> None:
        self._move(customer, points, lifetime, key=None)

    @rule(
        customer=customers,
        points=st.integers(min_value=1, max_value=500),
        lifetime=st.none() | st.booleans(),
    )
    def debit(self, customer: str, points: int, lifetime: bool | None) -> None:
        self._move(customer, -points, lifetime, key=None)

    @rule(target=keyed, customer=customers, points=st.integers(min_value=-300, max_value=300))
    def keyed_movement(self, customer: str, points: int) -> Any:
        if points == 0:
            return multiple()
        key = uuid.uuid4().hex
        response, body = self._move(customer, points, None, key=key)
        assert "Idempotent-Replayed" not in response.headers
        return KeyedRequest(key, customer, body, response.status_code, response.json())

    @rule(request=keyed)
    def retry_same(self, request: KeyedRequest) -> None:
        response = self.client.post(
            TRANSACTIONS,
            params={"customer_id": request.customer_id},
            json=request.body,
            headers={"Idempotency-Key": request.key},
        )
        assert response.status_code == request.status_code
        assert response.headers["Idempotent-Replayed"] == "true"
        assert response.json() == request.response

    @rule(request=consumes(keyed))
    def retry_other_body(self, request: KeyedRequest) -> None:
        other = {**request.body, "points": request.body["points"] + 1 or 2}
        response = self.client.post(
            TRANSACTIONS,
            params={"customer_id": request.customer_id},
            json=other,
            headers={"Idempotency-Key": request.key},
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "idempotency_key_reused"

    @rule(customer=customers)
    def zero_is_refused(self, customer: str) -> None:
        response = self.client.post(
            TRANSACTIONS, params={"customer_id": customer}, json={"points": 0, "description": "x"}
        )
        assert response.status_code == 422

    @rule(target=held, customer=customers, choice=st.integers(min_value=0, max_value=2))
    def redeem(self, customer: str, choice: int) -> Any:
        return self._redeem(customer, self.catalogue[choice])

    @rule(target=held, customer=customers, choice=st.integers(min_value=0, max_value=2))
    def earn_and_redeem(self, customer: str, choice: int) -> Any:
        reward = self.catalogue[choice]
        self._move(customer, reward.cost, None, key=None)
        return self._redeem(customer, reward)

    def _redeem(self, customer: str, reward: CatalogueReward) -> Any:
        response = self.client.post(
            f"{CUSTOMER_REWARDS}/redeem", params={"customer_id": customer},
            json={"reward_id": reward.id},
        )  # fmt: skip
        model = self.model[customer]
        if model.balance < reward.cost:
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] == "insufficient_points"
            return multiple()
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        model.balance -= reward.cost
        model.spent += reward.cost
        model.store_credit_cents += reward.credit_cents
        model.transaction_ids.append(data["transaction_id"])
        status = "used" if reward.reward_type == "store_credit" else "active"
        assert (data["status"], data["points_balance"]) == (status, model.balance)
        assert (data["discount_code"] is None) == (reward.reward_type == "store_credit")
        model.rewards[data["id"]] = status
        self.reward_operations["redeem"] += 1
        return HeldReward(data["id"], customer, reward.cost)

    @rule(reward=held)
    def revert(self, reward: HeldReward) -> None:
        response = self.client.post(f"{CUSTOMER_REWARDS}/{reward.id}/revert")
        model = self.model[reward.customer_id]
        if model.rewards[reward.id] != "active":
            assert response.status_code == 409, response.text
            assert response.json()["error"]["details"]["status"] == model.rewards[reward.id]
            return
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        model.balance += reward.cost
        model.spent -= reward.cost
        model.transaction_ids.append(data["revert_transaction_id"])
        model.rewards[reward.id] = "revert"
        assert data["points_balance"] == model.balance
        self.reward_operations["revert"] += 1

    @rule(reward=held)
    def use(self, reward: HeldReward) -> None:
        response = self.client.post(f"{CUSTOMER_REWARDS}/{reward.id}/use", json={"order_id": "1"})
        model = self.model[reward.customer_id]
        if model.rewards[reward.id] != "active":
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 200, response.text
        model.rewards[reward.id] = "used"
        self.reward_operations["use"] += 1

    # --- invariants ------------------------------------------------------------

    @invariant()
    def ledger_matches_model(self) -> None:
        LedgerModel.steps_run += 1
        for expected in self.model.values():
            customer = self.client.get(
                "/api/v1/public/customers", params={"customer_id": expected.customer_id}
            ).json()["data"]
            assert customer["points_balance"] == expected.balance >= 0
            assert customer["lifetime_points"] == expected.lifetime
            assert customer["pending_points"] == expected.pending
            assert customer["points_spent"] == expected.spent
            assert round(customer["store_credit_balance"] * 100) == expected.store_credit_cents
            entries = self._log(expected.customer_id)
            assert sum(entry["points"] for entry in entries) == expected.balance
            ids = [entry["transaction_id"] for entry in entries]
            assert sorted(ids) == sorted(expected.transaction_ids)  # each once, nothing else
            assert [entry["sequence"] for entry in entries] == list(range(len(entries), 0, -1))
            page = self.client.get(
                f"{CUSTOMER_REWARDS}/redeemable", params={"customer_id": expected.customer_id}
            ).json()["data"]
            shown = {reward["id"]: reward["status"] for reward in page["customer_rewards"]}
            assert shown == expected.rewards

    def _log(self, customer_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        params: dict[str, Any] = {"customer_id": customer_id, "limit": 100}
        while True:
            page = self.client.get(TRANSACTIONS, params=params).json()
            entries += page["data"]
            if page["next_cursor"] is None:
                return entries
            params["cursor"] = page["next_cursor"]


def test_ledger_against_its_model(fresh_database_url: str, tmp_path: Path) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Model shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    with running_server(fresh_database_url, tmp_path) as base_url:
        headers = {"Authorization": f"Bearer {key['token']}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            LedgerModel.client = client
            LedgerModel.catalogue = []
            for name, reward_type, cost, rule in CATALOGUE:
                created = client.post(
                    "/api/v1/rewards",
                    json={"name": name, "reward_type": reward_type, "points_cost": cost,
                          "reward_rule": rule},
                )  # fmt: skip
                assert created.status_code == 201, created.text
                credit = round(rule.get("credit_amount", 0) * 100)
                LedgerModel.catalogue.append(
                    CatalogueReward(created.json()["data"]["id"], reward_type, cost, credit)
                )
            LedgerModel.steps_run = 0
            LedgerModel.reward_operations = {"redeem": 0, "revert": 0, "use": 0}
            run_state_machine_as_test(
                LedgerModel,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
    database = fresh_database_url.split(":")[0]
    operations = LedgerModel.reward_operations
    print(
        f"\nledger model on {database}: {LedgerModel.steps_run} steps checked; "
        f"{operations['redeem']} redemptions, {operations['revert']} reverts, "
        f"{operations['use']} uses accepted"
    )
    assert LedgerModel.steps_run > EXAMPLES
    assert operations["redeem"] > 0, operations
    assert operations["revert"] + operations["use"] > 0, operations


pytestmark = pytest.mark.slow
