"""Rewarding customer actions (newsletter, follows, birthdays...) as ledger operations.

Each action type has at most one earn rule; it rewards ``points`` at most
``max_per_customer`` times per ``period_days`` (or ever), birthdays once per
calendar year. The count of earlier rewards is read under the customer's
balance lock, so concurrent or repeated posts of one action reward it no more
often than the rule allows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loyalty.ledger.batch import LockedCustomer, Movement

ActionKey = tuple[uuid.UUID, str]  # (merchant_id, action)
CountKey = tuple[uuid.UUID, uuid.UUID, str]  # (merchant_id, customer_id, action)

# Activity-log text of each action's reward.
DESCRIPTIONS = {
    "create_account": "Reward: account created",
    "newsletter": "Reward: newsletter signup",
    "sms": "Reward: SMS signup",
    "follow_facebook": "Reward: followed on Facebook",
    "follow_instagram": "Reward: followed on Instagram",
    "follow_tiktok": "Reward: followed on TikTok",
    "follow_twitter": "Reward: followed on X/Twitter",
    "follow_pinterest": "Reward: followed on Pinterest",
    "follow_youtube": "Reward: subscribed on YouTube",
    "share_facebook": "Reward: shared on Facebook",
    "share_twitter": "Reward: shared on X/Twitter",
    "birthday": "Happy birthday!",
}
ACTION_COLUMNS = (
    "merchant_id", "id", "customer_id", "action", "earn_rule_id", "points_minor",
    "transaction_id", "created_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RewardAction:
    action: str


@dataclass(frozen=True, slots=True)
class ActionRule:
    id: uuid.UUID
    points_minor: int
    active: bool
    max_per_customer: int | None
    period_days: int | None


@dataclass(slots=True)
class ActionContext:
    rules: dict[ActionKey, ActionRule] = field(default_factory=dict)
    # Rewards of the action inside the rule's period, before this batch.
    counts: dict[CountKey, int] = field(default_factory=dict)


@dataclass(slots=True)
class ActionWrites:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    # (merchant_id, customer_id) -> the customer's rewarded actions (JSON text).
    rewarded: dict[tuple[uuid.UUID, uuid.UUID], str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.inserts)


def action_keys(movements: list[Movement]) -> list[ActionKey]:
    return sorted({(m.merchant_id, m.action.action) for m in movements if m.action is not None})


def counting_since(rule: ActionRule, action: str, now: datetime) -> datetime | None:
    """Rewards from this moment on count against the limit (None: ever)."""
    if action == "birthday":
        return datetime(now.year, 1, 1, tzinfo=UTC)
    if rule.period_days is not None:
        return now - timedelta(days=rule.period_days)
    return None


def count_keys(
    movements: list[Movement],
    customers: dict[Any, LockedCustomer],
    context: ActionContext,
    now: datetime,
) -> list[tuple[uuid.UUID, uuid.UUID, str, datetime | None]]:
    """(merchant, customer, action, since) whose earlier rewards must be counted."""
    wanted: set[tuple[uuid.UUID, uuid.UUID, str, datetime | None]] = set()
    for movement in movements:
        if movement.action is None:
            continue
        rule = context.rules.get((movement.merchant_id, movement.action.action))
        locked = customers.get(movement.customer_key)
        if rule is None or locked is None:
            continue
        if rule.max_per_customer is None and movement.action.action != "birthday":
            continue
        since = counting_since(rule, movement.action.action, now)
        wanted.add((movement.merchant_id, locked.customer_id, movement.action.action, since))
    return sorted(wanted, key=lambda key: (key[0], key[1], key[2]))


def limit_of(rule: ActionRule, action: str) -> int | None:
    return 1 if action == "birthday" else rule.max_per_customer
