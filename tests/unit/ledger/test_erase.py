"""Erasure as a ledger movement, in process on the memory store, and the event scrub."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.erasure import scrub_payload
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.erase import Erase
from loyalty.ledger.operations.holds import Hold
from loyalty.ledger.operations.orders import PlaceOrder
from loyalty.ledger.operations.redemptions import Redeem
from loyalty.ledger.operations.refunds import RefundOrder
from loyalty.ledger.operations.transfers import TransferPoints
from tests.support.engine import MemoryLedger, body, ref


async def test_movements_before_the_erasure_are_written_off_those_after_find_no_customer() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 50, email="ada@example.com")
    bob = ledger.customer("bob", 5)
    by_email = CustomerRef(customer_email="ada@example.com")
    before, erased, after, by_mail, transfer, again = await ledger.batch(
        [
            ledger.movement(Adjust(ref(ada), 1000)),
            ledger.movement(Erase(ref(ada))),
            ledger.movement(Adjust(ref(ada), 700)),
            ledger.movement(Adjust(by_email, 700)),
            ledger.movement(TransferPoints(ref(bob), ref(ada), 100)),
            ledger.movement(Erase(ref(ada))),
        ]
    )
    assert (before.status_code, erased.status_code) == (201, 204)
    for outcome in (after, by_mail, transfer, again):
        assert (outcome.status_code, body(outcome)["error"]["code"]) == (404, "customer_not_found")
    stored = ledger.stored(ada)
    assert (stored.external_id, stored.email, stored.status) == (None, None, "erased")
    assert (stored.points_balance_minor, stored.lifetime_points_minor) == (0, 5000)
    entries = ledger.entries(ada)
    assert [(e.kind, e.points_minor, e.balance_after_minor) for e in entries] == [
        ("adjustment", 5000, 5000),
        ("adjustment", 1000, 6000),
        ("erase", -6000, 0),
    ]
    assert entries[-1].apply_to_lifetime is False
    assert ledger.balance(bob) == 5
    # The events of the batch are blanked with the older ones: none names "ada".
    ada_events = [e for e in ledger.store.tables.events if e.customer_ref != "bob"]
    assert [e.type for e in ada_events] == [
        "transaction.created",
        "transaction.created",
        "customer.erased",
    ]
    for event in ada_events:
        assert event.customer_ref is None
        # (As JSON strings: a random UUID's hex may hold the letters "ada".)
        assert '"ada"' not in event.payload
        assert "ada@example.com" not in event.payload


async def test_the_erasure_cancels_holds_deletes_live_rewards_and_lets_refunds_through() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 100)
    reward = ledger.reward("$5 off", 20)
    ledger.earn_rule("purchase", points_per_currency_unit_minor=100)
    redeemed = body(await ledger.one(Redeem(ref(ada), reward.id)))["data"]
    await ledger.one(Hold(Adjust(ref(ada), 3000), ledger.now + timedelta(days=3)))
    placed = ledger.now - timedelta(minutes=1)
    await ledger.one(PlaceOrder(ref(ada), "o1", 4000, "USD", (), placed, "f"))
    assert ledger.balance(ada) == 120
    assert (await ledger.one(Erase(ref(ada)))).status_code == 204
    stored = ledger.stored(ada)
    assert (stored.points_balance_minor, stored.pending_points_minor) == (0, 0)
    held = ledger.store.tables.customer_rewards[(ledger.merchant_id, uuid.UUID(redeemed["id"]))]
    assert held.status == "deleted"
    assert {row.status for row in ledger.store.tables.pending.values()} == {"cancelled"}
    types = ledger.event_types()
    assert types[-4:] == [
        "customer_reward.deleted",
        "pending_points.cancelled",
        "transaction.created",
        "customer.erased",
    ]
    erased = msgspec.json.decode(ledger.store.tables.events[-1].payload)["customer"]
    assert (erased["customer_id"], erased["status"], erased["points_balance"]) == (
        None,
        "erased",
        0,
    )
    # Its order is refunded through its UUID: nothing to take back, never below zero.
    refund = await ledger.one(RefundOrder(CustomerRef(internal_id=ada.customer_id), "o1", 1000))
    data = body(refund)["data"]
    assert (refund.status_code, data["points_removed"], data["shortfall"]) == (201, 0, 10)
    assert data["order"]["customer_id"] is None
    assert ledger.balance(ada) == 0


def test_the_scrub_blanks_personal_values_and_keeps_the_rest() -> None:
    payload = msgspec.json.encode(
        {
            "customer": {
                "id": "0193-uuid",
                "customer_id": "shop-42",
                "email": "ada@example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "date_of_birth": "1990-12-10",
                "status_reason": "asked",
                "points_balance": 10,
            },
            "from_customer_id": "shop-42",
            "to_customer_id": "shop-7",
            "order_id": "shop-42",  # the shop's order id, not a customer's: kept
            "contact": "ADA@example.com ",
            "previous_status": "active",
            "reason": "a staff note",
            "items": [{"referred_by": "shop-42"}],
        }
    ).decode()
    scrubbed = msgspec.json.decode(
        scrub_payload("customer.status_changed", payload, "shop-42", "ada@example.com")
    )
    assert scrubbed == {
        "customer": {
            "id": "0193-uuid",
            "customer_id": None,
            "email": None,
            "first_name": None,
            "last_name": None,
            "date_of_birth": None,
            "status_reason": None,
            "points_balance": 10,
        },
        "from_customer_id": None,
        "to_customer_id": "shop-7",
        "order_id": "shop-42",
        "contact": None,
        "previous_status": "active",
        "reason": None,
        "items": [{"referred_by": None}],
    }
    other = scrub_payload("transaction.created", '{"reason": "kept"}', "shop-42", None)
    assert msgspec.json.decode(other) == {"reason": "kept"}
