"""Reward operations that move points: redeeming a reward, reverting one.

A redemption is a ledger debit of the reward's cost plus a new customer
reward; a revert is a ledger credit of the points used plus the customer
reward's move to ``revert``. Both are decided under the customer's balance
lock, so two redemptions racing for the last points, or two reverts of one
reward, are decided one after the other like any two debits.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import timedelta

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import CustomerRewardRow
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_points
from loyalty.rewards.customer_rewards import ACTIVE, effective_status, to_detail
from loyalty.rewards.errors import (
    CustomerExcludedError,
    CustomerRewardNotFoundError,
    InvalidRewardStateError,
    RewardInactiveError,
    RewardLimitReachedError,
    RewardNotFoundError,
)
from loyalty.rewards.schemas import (
    CustomerRewardDetail,
    CustomerRewardMovement,
    CustomerRewardMovementEnvelope,
)

EXCLUDED_STATUSES = frozenset({"excluded", "excluded_by_customer"})
DESCRIPTION_CHARS_MAX = 255


@dataclasses.dataclass(frozen=True, slots=True)
class Redeem:
    customer: CustomerRef
    reward_id: uuid.UUID

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.rewards.add((merchant_id, self.reward_id))
        reward = snapshot.rewards.peek((merchant_id, self.reward_id))
        locked = snapshot.customer(merchant_id, self.customer)
        if reward is not None and reward.per_customer_limit is not None and locked is not None:
            want.redeemed.add((merchant_id, locked.customer_id, reward.id))

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        reward = tx.snapshot.rewards.get((merchant_id, self.reward_id))
        if reward is None:
            raise RewardNotFoundError(
                f"No reward {str(self.reward_id)!r}.", {"reward_id": str(self.reward_id)}
            )
        if not reward.active or reward.deleted:
            raise RewardInactiveError(
                "This reward is not active and cannot be redeemed.",
                {"reward_id": str(reward.id), "deleted": reward.deleted},
            )
        if locked.status in EXCLUDED_STATUSES:
            raise CustomerExcludedError(
                "This customer is excluded from the programme and cannot redeem rewards.",
                {"status": locked.status},
            )
        counted = (merchant_id, locked.customer_id, reward.id)
        limit = reward.per_customer_limit
        if limit is not None and (tx.snapshot.redeemed.get(counted) or 0) >= limit:
            raise RewardLimitReachedError(
                "The customer has redeemed this reward as often as it allows.",
                {"reward_id": str(reward.id), "per_customer_limit": limit},
            )
        # The reward's cost was checked against the precision when it was set.
        transaction = tx.post(
            locked,
            Posting(
                points_minor=-reward.points_cost_minor,
                kind="redeem",
                description=f"Redeemed: {reward.name}"[:DESCRIPTION_CHARS_MAX],
            ),
            reward=True,
        )
        now = tx.now
        row = CustomerRewardRow(
            merchant_id=merchant_id,
            id=tx.new_id(),
            customer_id=locked.customer_id,
            reward_id=reward.id,
            reward_type=reward.reward_type,
            reward_name=reward.name,
            reward_rule=reward.reward_rule,
            status=ACTIVE,
            discount_code=None,
            points_used_minor=reward.points_cost_minor,
            store_credit_minor=None,
            order_id=None,
            redeem_transaction_id=transaction.transaction_id,
            revert_transaction_id=None,
            expires_at=None,
            used_at=None,
            reverted_at=None,
            created_at=now,
            updated_at=now,
        )
        if reward.reward_type == "store_credit":
            # The value moves to the store credit balance at once: nothing left to use.
            rule = msgspec.json.decode(reward.reward_rule)
            credit = parse_points(rule["credit_amount"], MAXIMUM_DECIMALS)
            row.status, row.used_at, row.store_credit_minor = "used", now, credit
            locked.store_credit_balance_minor += credit
        else:
            row.discount_code = tx.new_code(merchant_id, locked.discount_code_prefix)
            if reward.code_validity_days is not None:
                row.expires_at = now + timedelta(days=reward.code_validity_days)
        tx.changes.customer_rewards.insert(row)
        tx.snapshot.customer_rewards.found((merchant_id, row.id), row)
        if limit is not None:
            tx.snapshot.redeemed.found(counted, (tx.snapshot.redeemed.get(counted) or 0) + 1)
        detail = to_detail(row, locked.external_id, now)
        tx.event(locked, "customer_reward.redeemed", row.id, event_payload(detail))
        return Result(201, reply(detail, locked.points_balance_minor))


@dataclasses.dataclass(frozen=True, slots=True)
class Revert:
    customer: CustomerRef
    customer_reward_id: uuid.UUID

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.customer_rewards.add((merchant_id, self.customer_reward_id))

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        held = tx.snapshot.customer_rewards.get((merchant_id, self.customer_reward_id))
        if held is None or held.customer_id != locked.customer_id:
            raise CustomerRewardNotFoundError(
                f"No customer reward {str(self.customer_reward_id)!r}.",
                {"id": str(self.customer_reward_id)},
            )
        now = tx.now
        status = effective_status(held.status, held.expires_at, now)
        if status != ACTIVE:
            raise InvalidRewardStateError(
                f"A reward that is {status!r} cannot be reverted; only active rewards can.",
                {"status": status, "action": "revert"},
            )
        transaction = tx.post(
            locked,
            Posting(
                points_minor=held.points_used_minor,
                kind="revert",
                description=f"Reward refunded: {held.reward_name}"[:DESCRIPTION_CHARS_MAX],
            ),
            reward=True,
        )
        # Changed in place: a second revert of it in this batch sees it reverted.
        held.status, held.reverted_at, held.updated_at = "revert", now, now
        held.revert_transaction_id = transaction.transaction_id
        tx.changes.customer_rewards.update(held)
        counted = (merchant_id, locked.customer_id, held.reward_id)
        # A redemption of the same reward later in this batch counts one fewer.
        redeemed = tx.snapshot.redeemed.peek(counted)
        if redeemed:
            tx.snapshot.redeemed.found(counted, redeemed - 1)
        detail = to_detail(held, locked.external_id, now)
        tx.event(locked, "customer_reward.reverted", held.id, event_payload(detail))
        return Result(200, reply(detail, locked.points_balance_minor))


def reply(detail: CustomerRewardDetail, balance_after: int) -> CustomerRewardMovementEnvelope:
    movement = CustomerRewardMovement(
        **msgspec.structs.asdict(detail), points_balance=format_points(balance_after)
    )
    return CustomerRewardMovementEnvelope(data=movement)


def event_payload(detail: CustomerRewardDetail) -> dict[str, CustomerRewardDetail]:
    return {"customer_reward": detail}
