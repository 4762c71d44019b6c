"""Every operation kind through the engine, in process on the memory store."""

from __future__ import annotations

import uuid
from datetime import timedelta

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.operations.actions import RewardAction
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.holds import Cancel, Hold, Release
from loyalty.ledger.operations.maintenance import Maintain
from loyalty.ledger.operations.orders import PlaceOrder
from loyalty.ledger.operations.redemptions import Redeem, Revert
from loyalty.ledger.operations.refunds import RefundOrder
from loyalty.ledger.operations.transfers import TransferPoints
from tests.support.engine import START, MemoryLedger, body, ref


async def test_adjust_credits_and_debits_with_lifetime_and_precision() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    credit = await ledger.one(Adjust(ref(ada), 1000, apply_to_lifetime=True, description="hi"))
    assert credit.status_code == 201
    data = body(credit)["data"]
    assert (data["points"], data["type"], data["description"]) == (10, "credit", "hi")
    debit = await ledger.one(Adjust(ref(ada), -400))
    assert body(debit)["data"]["description"] == "Points adjustment"  # the default text
    assert (ledger.balance(ada), ledger.stored(ada).lifetime_points_minor) == (6, 1000)
    fraction = await ledger.one(Adjust(ref(ada), 50))
    assert body(fraction)["error"]["details"][0]["field"] == "points"
    assert ledger.event_types().count("transaction.created") == 2


async def test_holds_are_pending_until_released_or_cancelled() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    available_at = ledger.now + timedelta(days=3)
    first = body(await ledger.one(Hold(Adjust(ref(ada), 500), available_at)))["data"]
    second = body(await ledger.one(Hold(Adjust(ref(ada), 300), available_at)))["data"]
    assert (first["status"], first["pending_points"]) == ("pending", 5)
    assert (ledger.balance(ada), ledger.stored(ada).pending_points_minor) == (0, 800)
    cancelled = await ledger.one(Cancel(ref(ada), uuid.UUID(second["id"])))
    assert body(cancelled)["data"]["status"] == "cancelled"
    again = await ledger.one(Cancel(ref(ada), uuid.UUID(second["id"])))
    assert (again.status_code, body(again)["error"]["code"]) == (409, "invalid_pending_state")
    released = body(await ledger.one(Release(ref(ada))))["data"]
    assert [row["id"] for row in released["released"]] == [first["id"]]
    assert (released["points_balance"], released["pending_points"]) == (5, 0)
    bob = ledger.customer("bob")
    foreign = await ledger.one(Release(ref(bob), uuid.UUID(first["id"])))
    assert body(foreign)["error"]["code"] == "pending_credit_not_found"


async def test_maintenance_expires_due_lots_first_in_first_out_and_releases_due_holds() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", expiry_policy="fixed", expiry_days=30)
    await ledger.one(Adjust(ref(ada), 1000))  # expires in 30 days
    ledger.advance(days=10)
    await ledger.one(Adjust(ref(ada), 500))  # expires in 40 days
    await ledger.one(Hold(Adjust(ref(ada), 200), ledger.now + timedelta(days=5)))
    await ledger.one(Adjust(ref(ada), -300))  # spends the earliest lot first
    ledger.advance(days=25)
    done = body(await ledger.one(Maintain(ref(ada))))["data"]
    assert done == {"points_expired": 7, "pending_released": 1}
    assert ledger.balance(ada) == 7  # 5 from the later lot + the 2 released
    assert ledger.stored(ada).points_expired_minor == 700
    again = body(await ledger.one(Maintain(ref(ada))))["data"]
    assert again == {"points_expired": 0, "pending_released": 0}


async def test_redeem_and_revert_with_codes_limits_and_store_credit() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 100)
    five_off = ledger.reward("Five off", 30, per_customer_limit=1, code_validity_days=7)
    credit = ledger.reward("Credit", 10, reward_type="store_credit",
                           reward_rule='{"credit_amount": 2.5}')  # fmt: skip
    redeemed = await ledger.one(Redeem(ref(ada), five_off.id))
    data = body(redeemed)["data"]
    assert (redeemed.status_code, data["discount_code"]) == (201, "SHOP-0001")
    assert data["expires_at"] is not None
    limited = await ledger.one(Redeem(ref(ada), five_off.id))
    assert body(limited)["error"]["code"] == "reward_limit_reached"
    stored = body(await ledger.one(Redeem(ref(ada), credit.id)))["data"]
    assert (stored["status"], stored["store_credit"]) == ("used", 2.5)
    assert ledger.stored(ada).store_credit_balance_minor == 250
    reverted = await ledger.one(Revert(ref(ada), uuid.UUID(data["id"])))
    assert (reverted.status_code, body(reverted)["data"]["status"]) == (200, "revert")
    assert ledger.balance(ada) == 90
    # Reverted, the reward may be redeemed again (the limit counts live redemptions).
    assert (await ledger.one(Redeem(ref(ada), five_off.id))).status_code == 201
    twice = await ledger.one(Revert(ref(ada), uuid.UUID(data["id"])))
    assert body(twice)["error"]["code"] == "invalid_reward_state"


async def test_orders_earn_once_hold_per_the_rule_and_refunds_take_back_in_proportion() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    ledger.earn_rule("purchase", points_per_currency_unit_minor=100, rounding="down",
                     pending_days=0)  # fmt: skip
    order = PlaceOrder(ref(ada), "o1", 4000, "EUR", (), ledger.now, "fp")
    placed = await ledger.one(order)
    assert (placed.status_code, body(placed)["data"]["points_earned"]) == (201, 40)
    again = await ledger.one(order)
    assert again.status_code == 200  # posted again: no effect
    conflict = await ledger.one(PlaceOrder(ref(ada), "o1", 10, "EUR", (), ledger.now, "other"))
    assert body(conflict)["error"]["code"] == "order_conflict"
    refund = body(await ledger.one(RefundOrder(ref(ada), "o1", 1000)))["data"]
    assert (refund["points_removed"], refund["order"]["status"]) == (10, "partially_refunded")
    assert ledger.balance(ada) == 30
    assert ledger.stored(ada).total_spent_minor == 3000
    too_much = await ledger.one(RefundOrder(ref(ada), "o1", 5000))
    assert body(too_much)["error"]["code"] == "refund_exceeds_order"


async def test_a_refund_while_points_are_pending_shrinks_the_hold() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    ledger.earn_rule("purchase", points_per_currency_unit_minor=100, pending_days=3)
    placed = body(await ledger.one(PlaceOrder(ref(ada), "o2", 2000, "EUR", (), ledger.now, "f")))
    assert placed["data"]["pending_credit_id"] is not None
    assert ledger.stored(ada).pending_points_minor == 2000
    refund = body(await ledger.one(RefundOrder(ref(ada), "o2", 500)))["data"]
    assert (refund["points_cancelled"], refund["points_removed"]) == (5, 0)
    assert ledger.stored(ada).pending_points_minor == 1500
    assert "pending_points.reduced" in ledger.event_types()


async def test_an_order_uses_its_discount_code_and_completes_the_referral() -> None:
    ledger = MemoryLedger()
    referrer = ledger.customer("referrer", 100)
    ada = ledger.customer("ada", 50, referred_by=referrer.customer_id)
    ledger.earn_rule("referral", 20, referee_points_minor=1000)
    ledger.earn_rule("purchase", points_per_currency_unit_minor=0, points=1)
    code = body(await ledger.one(Redeem(ref(ada), ledger.reward("Ten off", 10).id)))["data"]
    order = PlaceOrder(ref(ada), "o3", 3000, "EUR", (code["discount_code"],), ledger.now, "f",
                       referrer=ref(referrer))  # fmt: skip
    assert (await ledger.one(order)).status_code == 201
    used = ledger.store.tables.customer_rewards[(ledger.merchant_id, uuid.UUID(code["id"]))]
    assert (used.status, used.order_id) == ("used", "o3")
    assert ledger.balance(ada) == 50 - 10 + 1 + 10  # the order's point and the welcome
    assert ledger.balance(referrer) == 120
    assert ledger.stored(referrer).referred_completed == 1
    assert ledger.stored(ada).referral_completed_at == ledger.now
    assert "referral.completed" in ledger.event_types()


async def test_actions_are_rewarded_within_their_limit() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    ledger.earn_rule("newsletter", 5, max_per_customer=1)
    first = await ledger.one(RewardAction(ref(ada), "newsletter"))
    assert (first.status_code, body(first)["data"]["points"]) == (201, 5)
    second = body(await ledger.one(RewardAction(ref(ada), "newsletter")))["data"]
    assert (second["rewarded"], second["reason"]) == (False, "limit_reached")
    none = body(await ledger.one(RewardAction(ref(ada), "sms")))["data"]
    assert none["reason"] == "no_rule"
    assert ledger.stored(ada).rewarded_actions == '["newsletter"]'


async def test_transfers_move_points_between_two_customers_or_nothing() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 10, email="ada@example.com")
    bob = ledger.customer("bob")
    moved = await ledger.one(TransferPoints(ref(ada), ref(bob), 400))
    data = body(moved)["data"]
    assert (data["from"]["points"], data["to"]["points"]) == (-4, 4)
    assert (ledger.balance(ada), ledger.balance(bob)) == (6, 4)
    assert ledger.stored(bob).lifetime_points_minor == 0
    same = await ledger.one(TransferPoints(CustomerRef(customer_email="ada@example.com"),
                                           ref(ada), 100))  # fmt: skip
    assert body(same)["error"]["details"][0]["field"] == "to_customer_id"
    short = await ledger.one(TransferPoints(ref(ada), ref(bob), 700))
    assert body(short)["error"]["code"] == "insufficient_points"
    missing = await ledger.one(TransferPoints(ref(ada), CustomerRef(customer_id="x"), 100))
    assert body(missing)["error"]["code"] == "customer_not_found"
    assert (ledger.balance(ada), ledger.balance(bob)) == (6, 4)


async def test_a_tier_is_recomputed_for_every_customer_a_batch_touches() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", tier_basis="lifetime_points")
    gold = ledger.tier("Gold", 100)
    await ledger.one(Adjust(ref(ada), 10000, apply_to_lifetime=True))
    assert ledger.stored(ada).tier_id == gold.id
    assert "customer.tier_changed" in ledger.event_types()


async def test_an_orders_figures_follow_its_hold_whatever_ends_it() -> None:
    """points_earned = pending + released + cancelled; removed only out of released."""
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    ledger.earn_rule("purchase", points_per_currency_unit_minor=100, pending_days=3)

    async def order(order_id: str) -> dict[str, float]:
        again = PlaceOrder(ref(ada), order_id, 2000, "EUR", (), START, order_id)
        data: dict[str, float] = body(await ledger.one(again))["data"]
        return data

    for order_id in ("cancelled", "released"):
        await ledger.one(PlaceOrder(ref(ada), order_id, 2000, "EUR", (), START, order_id))
    by_hand = await order("cancelled")
    await ledger.one(Cancel(ref(ada), uuid.UUID(str(by_hand["pending_credit_id"]))))
    refund = body(await ledger.one(RefundOrder(ref(ada), "cancelled", None)))["data"]
    assert (refund["points_removed"], refund["points_cancelled"], refund["shortfall"]) == (0, 0, 0)
    figures = await order("cancelled")
    assert (figures["points_cancelled"], figures["points_removed"]) == (20, 0)
    released = await order("released")
    await ledger.one(Release(ref(ada), uuid.UUID(str(released["pending_credit_id"]))))
    await ledger.one(RefundOrder(ref(ada), "released", 500))
    figures = await order("released")
    assert (figures["points_released"], figures["points_removed"]) == (20, 5)
    for name in ("cancelled", "released"):
        f = await order(name)
        assert (
            f["points_earned"] == f["points_pending"] + f["points_released"] + f["points_cancelled"]
        )
    assert ledger.balance(ada) == 15
