"""Redeeming rewards, and the life of a customer reward (use, revert, expiry, status)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from loyalty.db.tables import customer_rewards, customers, ledger_entries
from loyalty.ledger import writer as ledger_writer
from loyalty.rewards import codes
from loyalty.rewards import service as rewards_service
from loyalty.rewards.codes import ALPHABET
from tests.support.rewards import (
    CUSTOMER_REWARDS,
    FIVE_OFF,
    REDEEM,
    REDEEMABLE,
    REWARDS,
    TEN_PERCENT,
    create,
    funded,
    redeem,
)
from tests.support.tenant import Tenant, event_types

SEED_CUSTOMER_REWARD_FIELDS = {
    "id", "reward_type", "status", "discount_code", "points_used", "expires_at", "used_at",
    "created_at",
}  # fmt: skip
CODE = re.compile(rf"^TESTSH-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")


async def customer_reward_count(tenant: Tenant) -> int:
    async with tenant.database.read() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(customer_rewards)
            .where(customer_rewards.c.merchant_id == tenant.merchant_id)
        )
    return int(count or 0)


async def entry_kinds(tenant: Tenant, customer_id: str) -> list[tuple[str, float]]:
    response = await tenant.get(
        "/api/v1/public/customers/transactions", params={"customer_id": customer_id}
    )
    return [(entry["kind"], entry["points"]) for entry in reversed(response.json()["data"])]


async def test_seed_002_scenario_and_redeem(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    ten = await create(tenant, TEN_PERCENT)
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    await funded(tenant, unique_id, 650)

    page = (await tenant.get(REDEEMABLE, params={"customer_id": unique_id})).json()["data"]
    assert page["points_balance"] == 650
    assert [(r["can_redeem"], r["points_needed"]) for r in page["rewards"]] == [
        (True, 0),
        (False, 350),
    ]
    assert page["customer_rewards"] == []

    response = await redeem(tenant, unique_id, five["id"])
    assert response.status_code == 201, response.text
    redeemed = response.json()["data"]
    assert CODE.match(redeemed["discount_code"]), redeemed["discount_code"]
    assert redeemed["status"] == "active"
    assert (redeemed["points_used"], redeemed["points_balance"]) == (500, 150)
    assert (redeemed["reward_id"], redeemed["reward_type"], redeemed["name"]) == (
        five["id"], "fixed_discount", FIVE_OFF["name"]
    )  # fmt: skip
    assert redeemed["reward_rule"] == {"points_required": 500, "discount_value": 5}
    assert redeemed["customer_id"] == unique_id
    assert redeemed["expires_at"] is None
    assert redeemed["used_at"] is None

    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["lifetime_points"], customer["points_spent"]) == (
        150, 650, 500
    )  # fmt: skip
    assert await entry_kinds(tenant, unique_id) == [("adjustment", 650), ("redeem", -500)]

    page = (await tenant.get(REDEEMABLE, params={"customer_id": unique_id})).json()["data"]
    assert page["points_balance"] == 150
    assert [(r["can_redeem"], r["points_needed"]) for r in page["rewards"]] == [
        (False, 350), (False, 850)
    ]  # fmt: skip
    by_email = await tenant.get(REDEEMABLE, params={"customer_email": f"{unique_id}@EXAMPLE.com"})
    assert by_email.json()["data"] == page
    [shown] = page["customer_rewards"]
    assert set(shown) == SEED_CUSTOMER_REWARD_FIELDS
    assert shown["id"] == redeemed["id"]
    assert shown["discount_code"] == redeemed["discount_code"]
    assert ten["id"] not in {r["id"] for r in page["customer_rewards"]}
    types = await event_types(tenant)
    assert types[-2:] == ["transaction.created", "customer_reward.redeemed"]


async def test_customer_rewards_are_newest_first(tenant: Tenant, unique_id: str) -> None:
    cheap = await create(tenant, {**FIVE_OFF, "points_cost": 10})
    await funded(tenant, unique_id, 100)
    ids = []
    for _ in range(3):
        response = await redeem(tenant, unique_id, cheap["id"])
        ids.append(response.json()["data"]["id"])
    page = (await tenant.get(REDEEMABLE, params={"customer_id": unique_id})).json()["data"]
    assert [r["id"] for r in page["customer_rewards"]] == ids[::-1]


async def test_redeem_then_use(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    redeemed = (await redeem(tenant, unique_id, five["id"])).json()["data"]

    response = await tenant.post(
        f"{CUSTOMER_REWARDS}/{redeemed['id']}/use", json={"order_id": "#1001"}
    )
    assert response.status_code == 200, response.text
    used = response.json()["data"]
    assert (used["status"], used["order_id"]) == ("used", "#1001")
    assert used["used_at"] is not None

    again = await tenant.post(f"{CUSTOMER_REWARDS}/{redeemed['id']}/use")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_reward_state"
    assert again.json()["error"]["details"] == {"status": "used", "action": "used"}
    revert = await tenant.post(f"{CUSTOMER_REWARDS}/{redeemed['id']}/revert")
    assert revert.status_code == 409, revert.text
    assert revert.json()["error"]["details"]["status"] == "used"
    assert (await tenant.customer(unique_id))["points_balance"] == 0
    fetched = (await tenant.get(f"{CUSTOMER_REWARDS}/{redeemed['id']}")).json()["data"]
    assert fetched == used
    assert (await event_types(tenant))[-1] == "customer_reward.used"


async def test_redeem_then_revert(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 700)
    redeemed = (await redeem(tenant, unique_id, five["id"])).json()["data"]

    response = await tenant.post(f"{CUSTOMER_REWARDS}/{redeemed['id']}/revert")
    assert response.status_code == 200, response.text
    reverted = response.json()["data"]
    assert (reverted["status"], reverted["points_balance"]) == ("revert", 700)
    assert reverted["reverted_at"] is not None
    assert reverted["revert_transaction_id"] is not None
    customer = await tenant.customer(unique_id)
    # The refund is not lifetime: lifetime stays at what was earned.
    assert (customer["points_balance"], customer["lifetime_points"], customer["points_spent"]) == (
        700, 700, 0
    )  # fmt: skip
    assert await entry_kinds(tenant, unique_id) == [
        ("adjustment", 700), ("redeem", -500), ("revert", 500)
    ]  # fmt: skip

    twice = await tenant.post(f"{CUSTOMER_REWARDS}/{redeemed['id']}/revert")
    assert twice.status_code == 409
    assert twice.json()["error"]["details"] == {"status": "revert", "action": "revert"}
    use = await tenant.post(f"{CUSTOMER_REWARDS}/{redeemed['id']}/use")
    assert use.status_code == 409
    assert (await tenant.customer(unique_id))["points_balance"] == 700
    assert (await event_types(tenant))[-2:] == ["transaction.created", "customer_reward.reverted"]


async def test_refusals_move_nothing(tenant: Tenant, other_tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    paused = await create(tenant, {**FIVE_OFF, "active": False})
    gone = await create(tenant, FIVE_OFF)
    assert (
        await tenant.client.delete(f"{REWARDS}/{gone['id']}", headers=tenant.headers)
    ).status_code == 204
    foreign = await create(other_tenant, FIVE_OFF)
    await tenant.enrol(unique_id)

    zero = await redeem(tenant, unique_id, five["id"])
    assert zero.status_code == 422
    assert zero.json()["error"]["code"] == "insufficient_points"
    assert zero.json()["error"]["details"] == {"points_balance": 0, "points_requested": 500}

    await tenant.adjust(unique_id, 2000)
    cases = [
        (paused["id"], 422, "reward_inactive"),
        (gone["id"], 422, "reward_inactive"),
        (foreign["id"], 404, "reward_not_found"),
        ("00000000-0000-0000-0000-000000000000", 404, "reward_not_found"),
        ("not-a-uuid", 404, "reward_not_found"),
    ]
    for reward_id, status, code in cases:
        response = await redeem(tenant, unique_id, reward_id)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), reward_id
    unknown = await redeem(tenant, "nobody-" + unique_id, five["id"])
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "customer_not_found")
    assert await customer_reward_count(tenant) == 0
    assert (await tenant.customer(unique_id))["points_balance"] == 2000
    assert await entry_kinds(tenant, unique_id) == [("adjustment", 2000)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reward_id"),
        ({"reward_id": 5}, "reward_id"),
        ({"reward_id": "x", "points": 5}, "points"),
    ],
)
async def test_bad_redeem_bodies_are_422(
    tenant: Tenant, unique_id: str, body: dict[str, Any], field: str
) -> None:
    await tenant.enrol(unique_id)
    response = await tenant.post(REDEEM, params={"customer_id": unique_id}, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


async def test_excluded_customer_cannot_redeem(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 600)

    async def exclude(connection: Any) -> None:
        await connection.execute(
            update(customers)
            .where(
                customers.c.merchant_id == tenant.merchant_id, customers.c.external_id == unique_id
            )
            .values(status="excluded")
        )

    await tenant.database.transaction(exclude)
    response = await redeem(tenant, unique_id, five["id"])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "customer_excluded"
    assert (await tenant.customer(unique_id))["points_balance"] == 600


async def test_per_customer_limit_counts_unreverted(tenant: Tenant, unique_id: str) -> None:
    once = await create(tenant, {**FIVE_OFF, "per_customer_limit": 1})
    await funded(tenant, unique_id, 2000)
    first = await redeem(tenant, unique_id, once["id"])
    assert first.status_code == 201
    second = await redeem(tenant, unique_id, once["id"])
    assert second.status_code == 422
    assert second.json()["error"]["code"] == "reward_limit_reached"
    revert = await tenant.post(f"{CUSTOMER_REWARDS}/{first.json()['data']['id']}/revert")
    assert revert.status_code == 200
    assert (await redeem(tenant, unique_id, once["id"])).status_code == 201
    # Concurrent redemptions in one batch: the limit still holds.
    twice = await create(tenant, {**FIVE_OFF, "points_cost": 10, "per_customer_limit": 2})
    results = await asyncio.gather(*(redeem(tenant, unique_id, twice["id"]) for _ in range(6)))
    assert sorted(r.status_code for r in results) == [201, 201, 422, 422, 422, 422]


async def test_store_credit(tenant: Tenant, unique_id: str) -> None:
    credit = await create(
        tenant,
        {"name": "$7.50 credit", "reward_type": "store_credit", "points_cost": 750,
         "reward_rule": {"credit_amount": 7.5}},
    )  # fmt: skip
    await funded(tenant, unique_id, 1600)
    results = [await redeem(tenant, unique_id, credit["id"]) for _ in range(2)]
    data = results[0].json()["data"]
    assert (data["status"], data["discount_code"], data["store_credit"]) == ("used", None, 7.5)
    assert data["used_at"] is not None
    customer = await tenant.customer(unique_id)
    assert (customer["store_credit_balance"], customer["points_balance"]) == (15, 100)
    revert = await tenant.post(f"{CUSTOMER_REWARDS}/{data['id']}/revert")
    assert revert.status_code == 409
    assert (await tenant.customer(unique_id))["store_credit_balance"] == 15


async def test_codes_expire(tenant: Tenant, unique_id: str) -> None:
    weekly = await create(tenant, {**FIVE_OFF, "code_validity_days": 7})
    await funded(tenant, unique_id, 1500)
    first = (await redeem(tenant, unique_id, weekly["id"])).json()["data"]
    second = (await redeem(tenant, unique_id, weekly["id"])).json()["data"]
    created = datetime.fromisoformat(first["created_at"])
    assert datetime.fromisoformat(first["expires_at"]) == created + timedelta(days=7)

    # A week on, the expiry job marks them expired (and only once).
    later = datetime.now(UTC) + timedelta(days=8)
    assert await rewards_service.expire_due_rewards(tenant.database, now=later, batch_size=1) >= 2
    assert await rewards_service.expire_due_rewards(tenant.database, now=later) == 0
    for reward in (first, second):
        fetched = (await tenant.get(f"{CUSTOMER_REWARDS}/{reward['id']}")).json()["data"]
        assert fetched["status"] == "expired"
        assert (await tenant.post(f"{CUSTOMER_REWARDS}/{reward['id']}/revert")).status_code == 409
        assert (await tenant.post(f"{CUSTOMER_REWARDS}/{reward['id']}/use")).status_code == 409
    assert (await event_types(tenant)).count("customer_reward.expired") == 2
    assert (await tenant.customer(unique_id))["points_balance"] == 500  # expiry refunds nothing


async def test_past_expiry_is_expired_before_the_job_runs(tenant: Tenant, unique_id: str) -> None:
    weekly = await create(tenant, {**FIVE_OFF, "code_validity_days": 7})
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, weekly["id"])).json()["data"]

    async def backdate(connection: Any) -> None:
        await connection.execute(
            update(customer_rewards)
            .where(customer_rewards.c.merchant_id == tenant.merchant_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    await tenant.database.transaction(backdate)
    page = (await tenant.get(REDEEMABLE, params={"customer_id": unique_id})).json()["data"]
    assert page["customer_rewards"][0]["status"] == "expired"
    response = await tenant.post(f"{CUSTOMER_REWARDS}/{reward['id']}/revert")
    assert response.status_code == 409
    assert response.json()["error"]["details"]["status"] == "expired"


async def test_merchant_status_changes(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, five["id"])).json()["data"]
    path = f"{CUSTOMER_REWARDS}/{reward['id']}"

    async def patch(status: str) -> httpx.Response:
        return await tenant.client.patch(path, json={"status": status}, headers=tenant.headers)

    assert (await patch("inactive")).json()["data"]["status"] == "inactive"
    assert (await tenant.post(f"{path}/use")).status_code == 409
    assert (await tenant.post(f"{path}/revert")).status_code == 409
    assert (await patch("inactive")).status_code == 200  # already so
    assert (await patch("active")).json()["data"]["status"] == "active"
    assert (await patch("deleted")).json()["data"]["status"] == "deleted"
    refused = await patch("active")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invalid_reward_state"
    bad = await patch("used")
    assert bad.status_code == 422
    types = await event_types(tenant)
    assert types[-3:] == [
        "customer_reward.deactivated", "customer_reward.reactivated", "customer_reward.deleted"
    ]  # fmt: skip
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_customer_rewards_are_tenant_scoped(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, five["id"])).json()["data"]
    path = f"{CUSTOMER_REWARDS}/{reward['id']}"
    for response in (
        await other_tenant.get(path),
        await other_tenant.post(f"{path}/use"),
        await other_tenant.post(f"{path}/revert"),
        await other_tenant.client.patch(
            path, json={"status": "deleted"}, headers=other_tenant.headers
        ),
        await tenant.get(f"{CUSTOMER_REWARDS}/not-a-uuid"),
        await tenant.post(f"{CUSTOMER_REWARDS}/00000000-0000-0000-0000-000000000000/revert"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "customer_reward_not_found"
    assert (await tenant.get(path)).json()["data"]["status"] == "active"


async def test_use_validates_the_order_id(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, five["id"])).json()["data"]
    for body in ({"order_id": "a\x00b"}, {"order_id": ""}, {"order": "1"}, {"order_id": 5}):
        response = await tenant.post(f"{CUSTOMER_REWARDS}/{reward['id']}/use", json=body)
        assert response.status_code == 422, (body, response.text)
    assert (await tenant.get(f"{CUSTOMER_REWARDS}/{reward['id']}")).json()["data"][
        "status"
    ] == "active"


async def test_redeem_and_revert_are_idempotent(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 1000)
    headers = {"Idempotency-Key": f"redeem-{unique_id}"}
    first = await redeem(tenant, unique_id, five["id"], headers=headers)
    again = await redeem(tenant, unique_id, five["id"], headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await redeem(tenant, unique_id, "00000000-0000-0000-0000-000000000000", headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert await customer_reward_count(tenant) == 1

    path = f"{CUSTOMER_REWARDS}/{first.json()['data']['id']}/revert"
    revert_headers = {"Idempotency-Key": f"revert-{unique_id}"}
    reverted = await tenant.post(path, headers=revert_headers)
    replayed = await tenant.post(path, headers=revert_headers)
    assert (reverted.status_code, replayed.status_code) == (200, 200)
    assert replayed.json() == reverted.json()
    assert (await tenant.customer(unique_id))["points_balance"] == 1000


async def test_twenty_concurrent_redemptions_with_points_for_five(
    tenant: Tenant, unique_id: str
) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 2500)
    results = await asyncio.gather(*(redeem(tenant, unique_id, five["id"]) for _ in range(20)))
    statuses = sorted(response.status_code for response in results)
    won = [r.json()["data"] for r in results if r.status_code == 201]
    lost = {r.json()["error"]["code"] for r in results if r.status_code != 201}
    assert statuses == [201] * 5 + [422] * 15
    assert lost == {"insufficient_points"}
    assert len({reward["discount_code"] for reward in won}) == 5
    assert sorted(reward["points_balance"] for reward in won) == [0, 500, 1000, 1500, 2000]
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["points_spent"]) == (0, 2500)
    assert await customer_reward_count(tenant) == 5
    async with tenant.database.read() as connection:
        entries = await connection.scalar(
            select(func.count())
            .select_from(ledger_entries)
            .where(ledger_entries.c.merchant_id == tenant.merchant_id)
        )
    assert entries == 6  # the credit and five redemptions
    print(
        f"\n20 concurrent redemptions, points for 5: {statuses.count(201)} redeemed, "
        f"{statuses.count(422)} insufficient_points, balance {customer['points_balance']}, "
        f"{entries - 1} redeem entries, 5 distinct codes"
    )


async def test_concurrent_reverts_refund_once(tenant: Tenant, unique_id: str) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, five["id"])).json()["data"]
    path = f"{CUSTOMER_REWARDS}/{reward['id']}"
    results = await asyncio.gather(
        *(tenant.post(f"{path}/revert") for _ in range(8)),
        *(tenant.post(f"{path}/use") for _ in range(4)),
    )
    succeeded = [r for r in results if r.status_code == 200]
    assert len(succeeded) == 1
    assert all(r.status_code == 409 for r in results if r.status_code != 200)
    final = (await tenant.get(path)).json()["data"]["status"]
    balance = (await tenant.customer(unique_id))["points_balance"]
    assert (final, balance) in {("revert", 500), ("used", 0)}


async def test_a_colliding_code_is_drawn_again(
    tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    five = await create(tenant, {**FIVE_OFF, "points_cost": 1})
    await funded(tenant, unique_id, 10)
    draws: list[str] = []
    real = codes.generate_code

    def colliding(prefix: str) -> str:
        # The first three draws are one code: the second redemption meets it in the database.
        code = f"{prefix}-AAAA-AAAA" if len(draws) < 3 else real(prefix)
        draws.append(code)
        return code

    monkeypatch.setattr(ledger_writer, "generate_code", colliding)
    first = await redeem(tenant, unique_id, five["id"])
    second = await redeem(tenant, unique_id, five["id"])
    assert (first.status_code, second.status_code) == (201, 201), second.text
    drawn = {first.json()["data"]["discount_code"], second.json()["data"]["discount_code"]}
    assert len(drawn) == 2
    assert "TESTSH-AAAA-AAAA" in drawn
    assert len(draws) >= 3
    assert (await tenant.customer(unique_id))["points_balance"] == 8
