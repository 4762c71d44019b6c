"""Erasure (DELETE /api/v1/public/customers): a GDPR erasure request."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from standardwebhooks import Webhook

from loyalty.customers.refs import CustomerRef
from loyalty.db.tables import (
    customer_balances,
    customer_rewards,
    customers,
    events,
    ledger_entries,
    orders,
    pending_credits,
)
from loyalty.ledger import service as ledger_service
from loyalty.ledger.operations.erase import ERASE_DESCRIPTION
from loyalty.ledger.schemas import CreateTransaction
from loyalty.ledger.writer import LedgerWriter
from loyalty.orders import service as orders_service
from loyalty.orders.schemas import RefundBody
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from tests.support.receiver import running_receiver
from tests.support.rewards import FIVE_OFF, create, redeem
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"
TRANSACTIONS = f"{CUSTOMERS}/transactions"
ORDERS = "/api/v1/public/orders"
RULES = "/api/v1/earn-rules"
# Rounds of the race (each a customer erased while 60 adjustments are in flight).
ROUNDS = 5
CLIENTS = 8
REFUNDS_PER_CLIENT = 12


async def erase(
    tenant: Tenant, headers: dict[str, str] | None = None, **ref: str
) -> httpx.Response:
    return await tenant.client.delete(
        CUSTOMERS, params=ref, headers={**tenant.headers, **(headers or {})}
    )


async def customer_uuid(tenant: Tenant, customer_id: str) -> uuid.UUID:
    data = await tenant.customer(customer_id)
    return uuid.UUID(data["id"])


async def stored_customer(tenant: Tenant, customer_id: uuid.UUID) -> Any:
    async with tenant.database.read() as connection:
        return (
            await connection.execute(
                select(customers, customer_balances)
                .join(
                    customer_balances,
                    (customer_balances.c.merchant_id == customers.c.merchant_id)
                    & (customer_balances.c.customer_id == customers.c.id),
                )
                .where(customers.c.merchant_id == tenant.merchant_id, customers.c.id == customer_id)
            )
        ).one()


async def entries_of(tenant: Tenant, customer_id: uuid.UUID) -> list[Any]:
    async with tenant.database.read() as connection:
        return list(
            await connection.execute(
                select(ledger_entries)
                .where(
                    ledger_entries.c.merchant_id == tenant.merchant_id,
                    ledger_entries.c.customer_id == customer_id,
                )
                .order_by(ledger_entries.c.sequence)
            )
        )


async def merchant_events(tenant: Tenant) -> list[Any]:
    async with tenant.database.read() as connection:
        return list(
            await connection.execute(
                select(events)
                .where(events.c.merchant_id == tenant.merchant_id)
                .order_by(events.c.id)
            )
        )


def check_books(entries: list[Any], balance: Any) -> None:
    """Sequences 1..n, every balance_after the running sum, the balance row their sum."""
    running = 0
    for sequence, entry in enumerate(entries, start=1):
        assert entry.sequence == sequence
        running += entry.points_minor
        assert entry.balance_after_minor == running >= 0
    assert balance.points_balance_minor == running
    assert balance.last_sequence == len(entries)


async def a_full_customer(
    tenant: Tenant, customer_id: str, email: str, order_id: str
) -> dict[str, Any]:
    """A customer with a profile, a status note, a referral code, points, a reward,
    a pending credit and an order."""
    await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 1})
    enrolled = await tenant.enrol(
        customer_id, email=email, first_name="Grace", last_name="Hopperton",
        date_of_birth="1985-12-09",
    )  # fmt: skip
    status = await tenant.client.patch(
        f"{CUSTOMERS}/status",
        params={"customer_id": customer_id},
        json={"status": "inactive", "reason": "asked by Grace Hopperton"},
        headers=tenant.headers,
    )
    assert status.status_code == 200, status.text
    back = await tenant.client.patch(
        f"{CUSTOMERS}/status",
        params={"customer_id": customer_id},
        json={"status": "active"},
        headers=tenant.headers,
    )
    assert back.status_code == 200
    referral = await tenant.get(f"{CUSTOMERS}/referral", params={"customer_id": customer_id})
    assert referral.status_code == 200
    assert (await tenant.adjust(customer_id, 900)).status_code == 201
    reward = await create(tenant, FIVE_OFF)
    assert (await redeem(tenant, customer_id, reward["id"])).status_code == 201
    held = await tenant.adjust(customer_id, 40, pending_days=10)
    assert held.status_code == 201, held.text
    placed = await tenant.post(
        ORDERS,
        json={"order_id": order_id, "customer_id": customer_id, "total": 60, "currency": "USD"},
    )
    assert placed.status_code == 201, placed.text
    return enrolled


async def test_erasure_removes_the_personal_data_and_writes_off_the_balance(
    tenant: Tenant, unique_id: str
) -> None:
    email = f"grace.{unique_id}@example.com"
    order_id = f"order-{uuid.uuid4().hex}"  # the shop's order id (kept)
    enrolled = await a_full_customer(tenant, unique_id, email, order_id)
    internal_id = uuid.UUID(enrolled["id"])
    before = await tenant.customer(unique_id)
    assert (before["points_balance"], before["pending_points"]) == (460, 40)
    assert before["lifetime_points"] == 960

    response = await erase(tenant, customer_id=unique_id)
    assert response.status_code == 204, response.text
    assert response.content == b""

    row = await stored_customer(tenant, internal_id)
    for column in ("external_id", "email", "first_name", "last_name", "first_name_search",
                   "last_name_search", "date_of_birth", "status_reason", "referral_code",
                   "referred_by"):  # fmt: skip
        assert getattr(row, column) is None, column
    assert row.status == "erased"
    # The balance written off by one erase entry; lifetime points unchanged.
    assert (row.points_balance_minor, row.pending_points_minor) == (0, 0)
    assert row.lifetime_points_minor == 96000
    assert row.expiring_lots_minor == 0
    entries = await entries_of(tenant, internal_id)
    check_books(entries, row)
    last = entries[-1]
    assert (last.kind, last.points_minor, last.description) == ("erase", -46000, ERASE_DESCRIPTION)
    assert (last.apply_to_lifetime, last.lifetime_delta_minor) == (False, 0)
    assert last.visible_to_customer is True
    assert [entry.kind for entry in entries] == ["adjustment", "redeem", "earn", "erase"]

    async with tenant.database.read() as connection:
        reward_statuses = (
            (
                await connection.execute(
                    select(customer_rewards.c.status).where(
                        customer_rewards.c.merchant_id == tenant.merchant_id,
                        customer_rewards.c.customer_id == internal_id,
                    )
                )
            )
            .scalars()
            .all()
        )
        pending_statuses = (
            (
                await connection.execute(
                    select(pending_credits.c.status).where(
                        pending_credits.c.merchant_id == tenant.merchant_id,
                        pending_credits.c.customer_id == internal_id,
                    )
                )
            )
            .scalars()
            .all()
        )
        order = (
            await connection.execute(
                select(orders).where(
                    orders.c.merchant_id == tenant.merchant_id,
                    orders.c.order_id == order_id,
                )
            )
        ).one()
    assert list(reward_statuses) == ["deleted"]
    assert list(pending_statuses) == ["cancelled"]
    assert order.customer_id == internal_id  # the shop's order stays, anonymous

    # Nothing of the person is left in any event, and none names the customer.
    erased_events = await merchant_events(tenant)
    for event in erased_events:
        for trace in (unique_id, email, "Grace", "Hopperton", "1985-12-09"):
            assert trace not in event.payload, (event.type, trace)
        assert event.customer_ref is None
    types = [event.type for event in erased_events]
    assert types[-4:] == [
        "customer_reward.deleted",
        "pending_points.cancelled",
        "transaction.created",
        "customer.erased",
    ]
    erased = await tenant.get("/api/v1/events", params={"type": "customer.erased"})
    [event] = erased.json()["data"]
    assert event["customer_id"] is None
    customer = event["data"]["customer"]
    assert customer["id"] == str(internal_id)
    assert customer["status"] == "erased"
    for field in ("customer_id", "email", "first_name", "last_name", "date_of_birth",
                  "status_reason"):  # fmt: skip
        assert customer[field] is None
    assert (customer["points_balance"], customer["pending_points"]) == (0, 0)
    assert customer["lifetime_points"] == 960
    created = await tenant.get("/api/v1/events", params={"type": "customer.created"})
    assert created.json()["data"][0]["data"]["customer"]["id"] == str(internal_id)


async def test_afterwards_the_platform_id_and_email_answer_404(
    tenant: Tenant, unique_id: str
) -> None:
    email = f"{unique_id}@example.com"
    await tenant.enrol(unique_id, email=email)
    assert (await tenant.adjust(unique_id, 10)).status_code == 201
    reward = await create(tenant, {**FIVE_OFF, "points_cost": 5})
    assert (await erase(tenant, customer_email=email.upper())).status_code == 204

    for params in ({"customer_id": unique_id}, {"customer_email": email}):
        for path in (CUSTOMERS, TRANSACTIONS, f"{CUSTOMERS}/referral", f"{CUSTOMERS}/data",
                     f"{CUSTOMERS}/pending", f"{CUSTOMERS}/rewards/redeemable"):  # fmt: skip
            response = await tenant.get(path, params=params)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["code"] == "customer_not_found"
        moved = await tenant.post(
            TRANSACTIONS, params=params, json={"points": 5, "description": "x"}
        )
        assert (moved.status_code, moved.json()["error"]["code"]) == (404, "customer_not_found")
        redeemed = await tenant.post(
            f"{CUSTOMERS}/rewards/redeem", params=params, json={"reward_id": reward["id"]}
        )
        assert redeemed.status_code == 404
        action = await tenant.post(f"{CUSTOMERS}/actions", params=params, json={"action": "sms"})
        assert action.status_code == 404
        status = await tenant.client.patch(
            f"{CUSTOMERS}/status", params=params, json={"status": "active"}, headers=tenant.headers
        )
        assert status.status_code == 404
        again = await tenant.client.delete(CUSTOMERS, params=params, headers=tenant.headers)
        assert (again.status_code, again.json()["error"]["code"]) == (404, "customer_not_found")
    transfer = await tenant.post(
        f"{CUSTOMERS}/transfers",
        json={"from_customer_id": unique_id, "to_customer_id": "someone", "points": 1},
    )
    assert transfer.status_code == 404


async def test_the_platform_id_enrols_again_as_a_new_customer(
    tenant: Tenant, unique_id: str
) -> None:
    first = await tenant.enrol(unique_id, email=f"{unique_id}@example.com", first_name="Ann")
    assert (await tenant.adjust(unique_id, 70)).status_code == 201
    assert (await erase(tenant, customer_id=unique_id)).status_code == 204
    again = await tenant.post(
        CUSTOMERS, json={"customer_id": unique_id, "email": f"{unique_id}@example.com"}
    )
    assert again.status_code == 201, again.text
    second = again.json()["data"]
    assert second["id"] != first["id"]
    assert (second["customer_id"], second["status"], second["first_name"]) == (
        unique_id,
        "active",
        None,
    )
    for field in ("points_balance", "pending_points", "lifetime_points", "points_spent"):
        assert second[field] == 0
    log = await tenant.get(TRANSACTIONS, params={"customer_id": unique_id})
    assert log.json()["data"] == []
    # Orders under the freed id belong to the new customer.
    await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 1})
    placed = await tenant.post(
        ORDERS, json={"order_id": f"o-{unique_id}", "customer_id": unique_id, "total": 10,
                      "currency": "USD"},
    )  # fmt: skip
    assert placed.status_code == 201
    assert (await tenant.customer(unique_id))["points_balance"] == 10


async def test_a_customer_without_points_is_erased_without_an_entry(
    tenant: Tenant, unique_id: str
) -> None:
    enrolled = await tenant.enrol(unique_id, first_name="Zero")
    assert (await erase(tenant, customer_id=unique_id)).status_code == 204
    assert await entries_of(tenant, uuid.UUID(enrolled["id"])) == []
    row = await stored_customer(tenant, uuid.UUID(enrolled["id"]))
    assert (row.status, row.first_name, row.points_balance_minor) == ("erased", None, 0)
    types = [event.type for event in await merchant_events(tenant)]
    assert types == ["customer.created", "customer.erased"]


async def test_an_erasure_is_replayed_under_its_idempotency_key(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 30)).status_code == 201
    key = {"Idempotency-Key": f"erase-{unique_id}"}
    first = await erase(tenant, key, customer_id=unique_id)
    assert first.status_code == 204
    assert "idempotent-replayed" not in first.headers
    replayed = await erase(tenant, key, customer_id=unique_id)
    assert (replayed.status_code, replayed.content) == (204, b"")
    assert replayed.headers["idempotent-replayed"] == "true"
    other = await erase(tenant, {"Idempotency-Key": f"other-{unique_id}"}, customer_id=unique_id)
    assert other.status_code == 404
    reused = await erase(tenant, key, customer_id=f"{unique_id}-x")
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    erase_entries = [e for e in await merchant_events(tenant) if e.type == "customer.erased"]
    assert len(erase_entries) == 1


async def test_erasure_needs_customers_write(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    token = await tenant.new_key("customers:read,transactions:write")
    refused = await tenant.client.delete(
        CUSTOMERS, params={"customer_id": unique_id}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403, refused.text
    assert (await tenant.customer(unique_id))["status"] == "active"
    missing = await erase(tenant)
    assert missing.status_code == 422


async def test_orders_of_an_erased_customer_stay_and_can_be_refunded(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 1})
    for order_id in ("a", "b"):
        placed = await tenant.post(
            ORDERS, json={"order_id": f"{order_id}-{unique_id}", "customer_id": unique_id,
                          "total": 100, "currency": "USD"},
        )  # fmt: skip
        assert placed.status_code == 201
    internal_id = await customer_uuid(tenant, unique_id)
    assert (await erase(tenant, customer_id=unique_id)).status_code == 204
    refunded = await tenant.post(f"{ORDERS}/a-{unique_id}/refunds", json={"amount": 40})
    assert refunded.status_code == 201, refunded.text
    data = refunded.json()["data"]
    # Nothing left to take back (the balance was written off): never below zero.
    assert (data["points_removed"], data["shortfall"], data["points_balance"]) == (0, 40, 0)
    assert data["order"]["customer_id"] is None
    assert data["order"]["status"] == "partially_refunded"
    rest = await tenant.post(f"{ORDERS}/b-{unique_id}/refunds", json={})
    assert rest.status_code == 201
    row = await stored_customer(tenant, internal_id)
    assert (row.points_balance_minor, row.total_spent_minor) == (0, 6000)
    check_books(await entries_of(tenant, internal_id), row)
    # The same order posted again by the shop is another customer's order now: a conflict.
    again = await tenant.post(
        ORDERS, json={"order_id": f"a-{unique_id}", "customer_id": unique_id, "total": 100,
                      "currency": "USD"},
    )  # fmt: skip
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "order_conflict"


async def test_referral_links_after_an_erasure(tenant: Tenant, unique_id: str) -> None:
    referrer, friend = f"{unique_id}-r", f"{unique_id}-f"
    await tenant.post(RULES, json={"type": "referral", "points": 50, "referee_points": 20})
    await tenant.enrol(referrer)
    code = (await tenant.get(f"{CUSTOMERS}/referral", params={"customer_id": referrer})).json()
    await tenant.enrol(friend, referral_code=code["data"]["referral_code"])
    assert (await erase(tenant, customer_id=referrer)).status_code == 204
    # Its code is gone with it.
    late = await tenant.post(
        CUSTOMERS,
        json={"customer_id": f"{unique_id}-l", "referral_code": code["data"]["referral_code"]},
    )
    assert late.status_code == 422
    # The friend's link stays, anonymous; its first order still welcomes it.
    link = (await tenant.get(f"{CUSTOMERS}/referral", params={"customer_id": friend})).json()
    assert link["data"]["referred_by"] is None
    placed = await tenant.post(
        ORDERS, json={"order_id": f"o-{unique_id}", "customer_id": friend, "total": 0,
                      "currency": "USD"},
    )  # fmt: skip
    assert placed.status_code == 201, placed.text
    assert (await tenant.customer(friend))["points_balance"] == 20
    completed = await tenant.get("/api/v1/events", params={"type": "referral.completed"})
    [event] = completed.json()["data"]
    assert event["data"]["referrer_customer_id"] is None
    assert event["data"]["referrer_points"] == 0
    # An erased customer's own link is removed.
    friend_id = await customer_uuid(tenant, friend)
    assert (await erase(tenant, customer_id=friend)).status_code == 204
    assert (await stored_customer(tenant, friend_id)).referred_by is None


async def test_adjustments_racing_an_erasure_never_leave_points_on_it(
    tenant: Tenant, unique_id: str
) -> None:
    """Clients keep crediting and debiting a customer, through the app's writer and
    through a second writer (another process), while it is erased: each movement is
    decided either before the erasure (and written off with the balance) or after it
    (404). The erased customer's books add up to zero, the write-off last."""
    other = LedgerWriter(tenant.database, batch_wait_ms_max=0.5)
    await other.start()
    try:
        for round_ in range(ROUNDS):
            customer_id = f"{unique_id}-{round_}"
            internal_id = uuid.UUID((await tenant.enrol(customer_id))["id"])
            assert (await tenant.adjust(customer_id, 100)).status_code == 201

            async def through_http(points: int, customer_id: str = customer_id) -> int:
                return (await tenant.adjust(customer_id, points)).status_code

            async def through_other_writer(points: int, customer_id: str = customer_id) -> int:
                outcome = await ledger_service.adjust_points(
                    other,
                    tenant.merchant_id,
                    CustomerRef(customer_id=customer_id),
                    CreateTransaction(points=points, description="another process"),
                    idempotency_key=None,
                    request_fingerprint="",
                )
                return outcome.status_code

            async def client(index: int) -> list[int]:
                """Moves points until the customer is gone."""
                move = through_http if index % 2 else through_other_writer
                statuses: list[int] = []
                while not statuses or statuses[-1] != 404:
                    statuses.append(await move(3 if len(statuses) % 3 else -2))
                    assert len(statuses) < 1000
                return statuses

            clients = [asyncio.create_task(client(index)) for index in range(CLIENTS)]
            await asyncio.sleep(0.02)
            erased = await erase(tenant, customer_id=customer_id)
            assert erased.status_code == 204, erased.text
            statuses = [status for done in await asyncio.gather(*clients) for status in done]
            assert set(statuses) <= {201, 404, 422}, statuses
            row = await stored_customer(tenant, internal_id)
            entries = await entries_of(tenant, internal_id)
            check_books(entries, row)
            assert (row.status, row.points_balance_minor) == ("erased", 0)
            # The write-off is the last entry: nothing was posted after it.
            assert [entry.kind for entry in entries].count("erase") == 1
            assert entries[-1].kind == "erase"
            assert len(entries) == 2 + statuses.count(201)
    finally:
        await other.stop()


async def test_the_feed_and_webhooks_serve_the_blanked_events(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    email = f"{unique_id}@example.com"
    with running_receiver() as receiver:
        response = await tenant.post("/api/v1/webhooks", json={"url": receiver.url()})
        assert response.status_code == 201, response.text
        secret = response.json()["data"]["secret"]
        await tenant.enrol(unique_id, email=email, first_name="Linus")
        assert (await tenant.adjust(unique_id, 25)).status_code == 201
        # The feed numbers (and hands out) the first events before the erasure.
        before = await tenant.get("/api/v1/events", params={"customer_id": unique_id})
        assert [event["type"] for event in before.json()["data"]] == [
            "customer.created",
            "transaction.created",
        ]
        assert (await erase(tenant, customer_id=unique_id)).status_code == 204
        deliverer = Deliverer(tenant.database, settings)
        try:
            while await deliverer.run_once():
                pass
        finally:
            await deliverer.stop()
        verifier = Webhook(secret)
        bodies = sorted(
            (verifier.verify(request.body, request.headers) for request in receiver.requests),
            key=lambda body: body["sequence"],
        )
    assert [body["type"] for body in bodies] == [
        "customer.created",
        "transaction.created",
        "transaction.created",
        "customer.erased",
    ]
    assert [body["sequence"] for body in bodies] == [1, 2, 3, 4]
    for body in bodies:
        assert body["customer_id"] is None
        for trace in (unique_id, email, "Linus"):
            assert trace not in json.dumps(body)
    assert bodies[0]["data"]["customer"]["email"] is None
    assert bodies[2]["data"]["transaction"]["kind"] == "erase"
    # The feed serves every event once, in sequence, none of them naming the customer.
    feed = await tenant.get("/api/v1/events", params={"limit": 100})
    served = feed.json()["data"]
    assert [event["sequence"] for event in served] == [1, 2, 3, 4]
    assert {event["customer_id"] for event in served} == {None}
    assert [event["data"] for event in served] == [body["data"] for body in bodies]
    named = await tenant.get("/api/v1/events", params={"customer_id": unique_id})
    assert named.json()["data"] == []


async def test_refunds_racing_an_erasure_all_go_through(tenant: Tenant, unique_id: str) -> None:
    """Refunds name the buyer by UUID, which an erasure keeps: those decided after it
    still refund the order (taking back nothing: the balance was written off), also
    when they waited for the customer's lock while it was erased."""
    await tenant.post(RULES, json={"type": "purchase", "points_per_currency_unit": 1})
    other = LedgerWriter(tenant.database, batch_wait_ms_max=0.5)
    await other.start()
    try:
        for round_ in range(ROUNDS):
            await _refunds_racing_an_erasure(tenant, other, f"{unique_id}-{round_}")
    finally:
        await other.stop()


async def _refunds_racing_an_erasure(tenant: Tenant, other: LedgerWriter, buyer: str) -> None:
    for index in range(CLIENTS):
        placed = await tenant.post(
            ORDERS, json={"order_id": f"{buyer}-{index}", "customer_id": buyer, "total": 100,
                          "currency": "USD"},
        )  # fmt: skip
        assert placed.status_code == 201
    internal_id = await customer_uuid(tenant, buyer)

    async def client(index: int) -> list[tuple[int, float]]:
        """Refunds its order 1.00 at a time, through either writer."""
        order_id = f"{buyer}-{index}"
        answers: list[tuple[int, float]] = []
        for count in range(REFUNDS_PER_CLIENT):
            if count % 2:
                response = await tenant.post(f"{ORDERS}/{order_id}/refunds", json={"amount": 1})
                data = response.json().get("data", {})
                answers.append((response.status_code, data.get("points_removed", 0)))
            else:
                outcome = await orders_service.refund_order(
                    tenant.database, other, tenant.merchant_id, order_id, RefundBody(amount=1),
                    idempotency_key=None, request_fingerprint="",
                )  # fmt: skip
                data = json.loads(outcome.body).get("data", {})
                answers.append((outcome.status_code, data.get("points_removed", 0)))
        return answers

    clients = [asyncio.create_task(client(index)) for index in range(CLIENTS)]
    await asyncio.sleep(0.02)
    assert (await erase(tenant, customer_id=buyer)).status_code == 204
    answers = [answer for done in await asyncio.gather(*clients) for answer in done]
    assert {status for status, _ in answers} == {201}, answers
    row = await stored_customer(tenant, internal_id)
    entries = await entries_of(tenant, internal_id)
    check_books(entries, row)
    assert row.points_balance_minor == 0
    removed = sum(points for _, points in answers)
    written_off = -sum(entry.points_minor for entry in entries if entry.kind == "erase")
    assert removed * 100 + written_off == CLIENTS * 100 * 100
    # Batches that waited for the customer's lock read its row as it was then:
    # no refund's change to total_spent is lost.
    assert row.total_spent_minor == CLIENTS * 100 * 100 - len(answers) * 100


async def test_an_erased_customers_rewards_read_anonymous_and_cannot_move(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 1000)).status_code == 201
    reward = await create(tenant, FIVE_OFF)
    used = (await redeem(tenant, unique_id, reward["id"])).json()["data"]
    live = (await redeem(tenant, unique_id, reward["id"])).json()["data"]
    path = "/api/v1/public/customers/rewards"
    assert (await tenant.post(f"{path}/{used['id']}/use", json={})).status_code == 200
    assert (await erase(tenant, customer_id=unique_id)).status_code == 204
    for held, status in ((used, "used"), (live, "deleted")):
        shown = await tenant.get(f"{path}/{held['id']}")
        assert shown.status_code == 200
        assert (shown.json()["data"]["customer_id"], shown.json()["data"]["status"]) == (
            None,
            status,
        )
        reverted = await tenant.post(f"{path}/{held['id']}/revert")
        assert (reverted.status_code, reverted.json()["error"]["code"]) == (
            409,
            "invalid_reward_state",
        )
        restored = await tenant.client.patch(
            f"{path}/{held['id']}", json={"status": "active"}, headers=tenant.headers
        )
        assert restored.status_code == 409
