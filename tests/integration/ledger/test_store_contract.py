"""One scripted sequence of every operation kind through the engine, on the memory store
and on each database: the same answers and the same balances. The unit layer runs on
the memory store; this keeps it honest about what the real stores do."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ids import new_id
from loyalty.ledger.engine.batch import run_batch
from loyalty.ledger.engine.protocol import Movement, Operation, Outcome
from loyalty.ledger.operations.actions import RewardAction
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.holds import Release
from loyalty.ledger.operations.maintenance import Maintain
from loyalty.ledger.operations.orders import PlaceOrder
from loyalty.ledger.operations.redemptions import Redeem, Revert
from loyalty.ledger.operations.refunds import RefundOrder
from loyalty.ledger.operations.transfers import TransferPoints
from loyalty.ledger.writer import store_for
from loyalty.rewards.codes import generate_code
from tests.support.engine import MemoryLedger
from tests.support.rewards import FIVE_OFF, create
from tests.support.tenant import Tenant

Run = Callable[[Operation], Awaitable[Outcome]]


def answer(outcome: Outcome) -> tuple[int, Any, Any]:
    """What must agree: the status, the balance answered, the error's code."""
    body: dict[str, Any] = msgspec.json.decode(outcome.body)
    data = body.get("data")
    balance = data.get("points_balance") if isinstance(data, dict) else None
    return outcome.status_code, balance, body.get("error", {}).get("code")


async def scenario(run: Run, reward_id: uuid.UUID) -> list[tuple[int, Any, Any]]:
    a, b = CustomerRef(customer_id="a"), CustomerRef(customer_id="b")
    answers = [answer(await run(Adjust(a, -1000)))]
    redeemed = await run(Redeem(a, reward_id))
    answers.append(answer(redeemed))
    answers.append(answer(await run(Redeem(a, reward_id))))  # the limit: once
    held = uuid.UUID(msgspec.json.decode(redeemed.body)["data"]["id"])
    answers.append(answer(await run(Revert(a, held))))
    placed_at = utc_now() - timedelta(minutes=1)
    answers.append(answer(await run(PlaceOrder(a, "o1", 4000, "USD", (), placed_at, "f"))))
    answers.append(answer(await run(RefundOrder(a, "o1", 1000))))
    answers.append(answer(await run(Release(a))))
    answers.append(answer(await run(TransferPoints(a, b, 2000))))
    answers.append(answer(await run(RewardAction(a, "newsletter"))))
    answers.append(answer(await run(RewardAction(a, "newsletter"))))
    answers.append(answer(await run(Maintain(b))))
    answers.append(answer(await run(Adjust(b, -5000))))
    return answers


async def test_the_memory_store_answers_as_the_database_does(
    tenant: Tenant, database: Database
) -> None:
    # The database: seeded through the API, driven through its store.
    for customer_id in ("a", "b"):
        await tenant.enrol(customer_id)
    assert (await tenant.adjust("a", 100)).status_code == 201
    reward = await create(tenant, {**FIVE_OFF, "points_cost": 30, "per_customer_limit": 1})
    rules = [
        {"type": "purchase", "points_per_currency_unit": 1, "pending_days": 3},
        {"type": "newsletter", "points": 5, "max_per_customer": 1},
    ]
    for rule in rules:
        assert (await tenant.post("/api/v1/earn-rules", json=rule)).status_code == 201
    store = store_for(database)

    async def on_database(operation: Operation) -> Outcome:
        async with store.batch() as session:
            (outcome,) = await run_batch(
                session,
                [Movement(tenant.merchant_id, operation)],
                now=utc_now(),
                new_id=new_id,
                draw_code=generate_code,
            )
        return outcome

    # The memory store: the same programme, as rows.
    memory = MemoryLedger()
    customers = {"a": memory.customer("a", 100), "b": memory.customer("b")}
    memory_reward = memory.reward("$5 off", 30, per_customer_limit=1)
    memory.earn_rule("purchase", points_per_currency_unit_minor=100, rounding="down",
                     pending_days=3)  # fmt: skip
    memory.earn_rule("newsletter", 5, max_per_customer=1)

    async def in_memory(operation: Operation) -> Outcome:
        memory.now = utc_now()
        return await memory.one(operation)

    on_db = await scenario(on_database, uuid.UUID(reward["id"]))
    in_mem = await scenario(in_memory, memory_reward.id)
    assert on_db == in_mem
    assert [status for status, _, _ in on_db] == [
        201, 201, 422, 200, 201, 201, 200, 201, 201, 200, 200, 422,
    ]  # fmt: skip
    for customer_id in ("a", "b"):
        seen = await tenant.customer(customer_id)
        stored = memory.stored(customers[customer_id])
        assert (seen["points_balance"], seen["lifetime_points"], seen["pending_points"]) == (
            stored.points_balance_minor / 100,
            stored.lifetime_points_minor / 100,
            stored.pending_points_minor / 100,
        )
