"""Reward operations that move points: redeeming a reward, reverting one.

A redemption is a ledger debit of the reward's cost plus a new customer
reward; a revert is a ledger credit of the points used plus the customer
reward's move to ``revert``. Both ride the batching writer as movements
carrying a reward operation, so the points and the reward change commit in
one transaction, decided under the customer's balance lock: two redemptions
racing for the last points, or two reverts of one reward, are decided one
after the other like any two debits. Pure planning here; the stores load the
``RewardContext`` and write what the plan collects.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from loyalty.errors import invariant
from loyalty.ids import new_id
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_points
from loyalty.rewards.codes import generate_code
from loyalty.rewards.customer_rewards import ACTIVE, effective_status
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

if TYPE_CHECKING:
    from loyalty.ledger.batch import CustomerKey, LockedCustomer, Movement

EXCLUDED_STATUSES = frozenset({"excluded", "excluded_by_customer"})
DESCRIPTION_CHARS_MAX = 255
# Drawing a code that another customer reward of this batch already holds.
CODE_DRAWS_MAX = 8

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Redemption:
    reward_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Revert:
    customer_reward_id: uuid.UUID


RewardOperation = Redemption | Revert

# The customer_rewards columns, in the order both stores write and read them.
CUSTOMER_REWARD_COLUMNS = (
    "merchant_id", "id", "customer_id", "reward_id", "reward_type", "reward_name", "reward_rule",
    "status", "discount_code", "points_used_minor", "store_credit_minor", "order_id",
    "redeem_transaction_id", "revert_transaction_id", "expires_at", "used_at", "reverted_at",
    "created_at", "updated_at",
)  # fmt: skip
RewardKey = tuple[uuid.UUID, uuid.UUID]  # (merchant_id, id)


@dataclass(frozen=True, slots=True)
class CatalogueReward:
    merchant_id: uuid.UUID
    id: uuid.UUID
    name: str
    reward_type: str
    points_cost_minor: int
    reward_rule: str
    active: bool
    deleted: bool
    code_validity_days: int | None
    per_customer_limit: int | None


@dataclass(slots=True)
class RewardContext:
    """What the batch's reward operations need, read under the balance locks."""

    rewards: dict[RewardKey, CatalogueReward] = field(default_factory=dict)
    # (merchant_id, customer_id, reward_id) -> redemptions not reverted.
    redeemed: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], int] = field(default_factory=dict)
    # Customer rewards to revert, locked, as column values.
    held: dict[RewardKey, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class RewardWrites:
    """The batch's writes to customer rewards and store credit."""

    inserts: list[dict[str, Any]] = field(default_factory=list)
    # (merchant_id, customer_reward_id, revert_transaction_id)
    reverts: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = field(default_factory=list)
    store_credit: defaultdict[tuple[uuid.UUID, uuid.UUID], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    codes: set[tuple[uuid.UUID, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.reverts)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A reward operation checked; applied once its ledger entry is accepted."""

    points_minor: int
    description: str
    reward: CatalogueReward | None = None
    held: dict[str, Any] | None = None


def reward_keys(movements: list[Movement]) -> list[RewardKey]:
    return sorted(
        {(m.merchant_id, m.reward.reward_id) for m in movements if isinstance(m.reward, Redemption)}
    )


def counted_keys(
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
    context: RewardContext,
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """(merchant, customer, reward) of each redemption of a reward with a per-customer limit."""
    keys: set[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = set()
    for movement in movements:
        if not isinstance(movement.reward, Redemption):
            continue
        reward = context.rewards.get((movement.merchant_id, movement.reward.reward_id))
        locked = customers.get(movement.customer_key)
        if reward is not None and reward.per_customer_limit is not None and locked is not None:
            keys.add((movement.merchant_id, locked.customer_id, reward.id))
    return sorted(keys)


def held_keys(movements: list[Movement]) -> list[RewardKey]:
    """Customer rewards to lock, in one fixed order (no deadlock between batches)."""
    return sorted(
        {
            (m.merchant_id, m.reward.customer_reward_id)
            for m in movements
            if isinstance(m.reward, Revert)
        }
    )


def _text(text: str) -> str:
    return text[:DESCRIPTION_CHARS_MAX]


def prepare(
    movement: Movement, locked: LockedCustomer, context: RewardContext, now: datetime
) -> Prepared:
    """Check the operation against the locked state; raise the client's error."""
    operation = movement.reward
    if isinstance(operation, Redemption):
        reward = context.rewards.get((movement.merchant_id, operation.reward_id))
        if reward is None:
            raise RewardNotFoundError(
                f"No reward {str(operation.reward_id)!r}.", {"reward_id": str(operation.reward_id)}
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
        limit = reward.per_customer_limit
        if limit is not None:
            redeemed = context.redeemed.get((reward.merchant_id, locked.customer_id, reward.id), 0)
            if redeemed >= limit:
                raise RewardLimitReachedError(
                    "The customer has redeemed this reward as often as it allows.",
                    {"reward_id": str(reward.id), "per_customer_limit": limit},
                )
        return Prepared(-reward.points_cost_minor, _text(f"Redeemed: {reward.name}"), reward=reward)
    invariant(isinstance(operation, Revert), "a reward operation is a redemption or a revert")
    assert isinstance(operation, Revert)
    held = context.held.get((movement.merchant_id, operation.customer_reward_id))
    if held is None or held["customer_id"] != locked.customer_id:
        raise CustomerRewardNotFoundError(
            f"No customer reward {str(operation.customer_reward_id)!r}.",
            {"id": str(operation.customer_reward_id)},
        )
    status = effective_status(held["status"], held["expires_at"], now)
    if status != ACTIVE:
        raise InvalidRewardStateError(
            f"A reward that is {status!r} cannot be reverted; only active rewards can.",
            {"status": status, "action": "revert"},
        )
    return Prepared(
        held["points_used_minor"], _text(f"Reward refunded: {held['reward_name']}"), held=held
    )


def _draw_code(writes: RewardWrites, merchant_id: uuid.UUID, prefix: str) -> str:
    for _ in range(CODE_DRAWS_MAX):
        code = generate_code(prefix)
        if (merchant_id, code) not in writes.codes:
            writes.codes.add((merchant_id, code))
            return code
    raise AssertionError("no fresh discount code in 8 draws")


def apply(
    prepared: Prepared,
    writes: RewardWrites,
    context: RewardContext,
    locked: LockedCustomer,
    *,
    transaction_id: uuid.UUID,
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """Record the reward side of an accepted movement; the event type and the row."""
    merchant_id = locked.merchant_id
    if prepared.reward is not None:
        reward = prepared.reward
        rule = msgspec.json.decode(reward.reward_rule)
        row: dict[str, Any] = {
            "merchant_id": merchant_id,
            "id": new_id(),
            "customer_id": locked.customer_id,
            "reward_id": reward.id,
            "reward_type": reward.reward_type,
            "reward_name": reward.name,
            "reward_rule": reward.reward_rule,
            "status": ACTIVE,
            "discount_code": None,
            "points_used_minor": reward.points_cost_minor,
            "store_credit_minor": None,
            "order_id": None,
            "redeem_transaction_id": transaction_id,
            "revert_transaction_id": None,
            "expires_at": None,
            "used_at": None,
            "reverted_at": None,
            "created_at": now,
            "updated_at": now,
        }
        if reward.reward_type == "store_credit":
            # The value moves to the store credit balance at once: nothing left to use.
            credit = parse_points(rule["credit_amount"], MAXIMUM_DECIMALS)
            row.update(status="used", used_at=now, store_credit_minor=credit)
            writes.store_credit[(merchant_id, locked.customer_id)] += credit
        else:
            row["discount_code"] = _draw_code(writes, merchant_id, locked.discount_code_prefix)
            if reward.code_validity_days is not None:
                row["expires_at"] = now + timedelta(days=reward.code_validity_days)
        writes.inserts.append(row)
        counted = (merchant_id, locked.customer_id, reward.id)
        context.redeemed[counted] = context.redeemed.get(counted, 0) + 1
        return "customer_reward.redeemed", row
    held = prepared.held
    assert held is not None
    # Changed in place: a second revert of it in this batch sees it reverted.
    held.update(
        status="revert", reverted_at=now, revert_transaction_id=transaction_id, updated_at=now
    )
    writes.reverts.append((merchant_id, held["id"], transaction_id))
    counted = (merchant_id, locked.customer_id, held["reward_id"])
    if counted in context.redeemed:
        context.redeemed[counted] -= 1
    return "customer_reward.reverted", held


def reply(detail: CustomerRewardDetail, balance_after: int) -> bytes:
    movement = CustomerRewardMovement(
        **msgspec.structs.asdict(detail), points_balance=format_points(balance_after)
    )
    return _encoder.encode(CustomerRewardMovementEnvelope(data=movement))


def event_payload(detail: CustomerRewardDetail) -> str:
    return _encoder.encode({"customer_reward": detail}).decode()
