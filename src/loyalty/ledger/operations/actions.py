"""Rewarding customer actions (newsletter, follows, birthdays...).

Each action type has at most one earn rule; it rewards ``points`` at most
``max_per_customer`` times per ``period_days`` (or ever), birthdays once per
calendar year. The count of earlier rewards is read under the customer's
balance lock, so concurrent or repeated posts of one action reward it no more
often than the rule allows.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import ActionEnvelope, ActionResult
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import ActionRow, EarnRuleRow, LockedCustomer
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx, Posting
from loyalty.points import format_points

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


def counting_since(rule: EarnRuleRow, action: str, now: datetime) -> datetime | None:
    """Rewards from this moment on count against the limit (None: ever)."""
    if action == "birthday":
        return datetime(now.year, 1, 1, tzinfo=UTC)
    if rule.period_days is not None:
        return now - timedelta(days=rule.period_days)
    return None


def limit_of(rule: EarnRuleRow, action: str) -> int | None:
    return 1 if action == "birthday" else rule.max_per_customer


@dataclasses.dataclass(frozen=True, slots=True)
class RewardAction:
    customer: CustomerRef
    action: str

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        want.earn_rules.add((merchant_id, self.action))
        rule = snapshot.earn_rules.peek((merchant_id, self.action))
        locked = snapshot.customer(merchant_id, self.customer)
        if rule is None or locked is None or limit_of(rule, self.action) is None:
            return
        want.action_counts.add(self._count_key(rule, locked, snapshot))

    def _count_key(
        self, rule: EarnRuleRow, locked: LockedCustomer, snapshot: Snapshot
    ) -> tuple[uuid.UUID, uuid.UUID, str, datetime | None]:
        since = counting_since(rule, self.action, snapshot.now)
        return (locked.merchant_id, locked.customer_id, self.action, since)

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        locked = tx.customer(merchant_id, self.customer)
        action = self.action
        rule = tx.snapshot.earn_rules.get((merchant_id, action))
        reason = None
        if rule is None:
            reason = "no_rule"
        elif not rule.active:
            reason = "rule_inactive"
        elif locked.status != "active":
            reason = f"customer_{locked.status}"
        else:
            limit = limit_of(rule, action)
            if limit is not None:
                count_key = self._count_key(rule, locked, tx.snapshot)
                if (tx.snapshot.action_counts.get(count_key) or 0) >= limit:
                    reason = "limit_reached"
        if reason is not None or rule is None:
            return Result(200, action_reply(action, False, reason, 0, None, None, locked))
        transaction = tx.post(
            locked,
            Posting(
                points_minor=rule.points_minor,
                kind="earn",
                description=DESCRIPTIONS.get(action, "Reward"),
                apply_to_lifetime=True,
                earn_rule_id=rule.id,
            ),
        )
        if limit_of(rule, action) is not None:
            count_key = self._count_key(rule, locked, tx.snapshot)
            counted = tx.snapshot.action_counts.get(count_key) or 0
            tx.snapshot.action_counts.found(count_key, counted + 1)
        tx.changes.actions.append(
            ActionRow(
                merchant_id=merchant_id,
                id=tx.new_id(),
                customer_id=locked.customer_id,
                action=action,
                earn_rule_id=rule.id,
                points_minor=rule.points_minor,
                transaction_id=transaction.transaction_id,
                created_at=tx.now,
            )
        )
        rewarded = set(msgspec.json.decode(locked.rewarded_actions))
        if action not in rewarded:
            locked.rewarded_actions = msgspec.json.encode(sorted(rewarded | {action})).decode()
        reply = action_reply(
            action, True, None, rule.points_minor, transaction.transaction_id, rule.id, locked
        )
        tx.event(
            locked,
            "customer.action_rewarded",
            locked.customer_id,
            {"customer_id": locked.external_id, "data": reply.data},
        )
        return Result(201, reply)


def action_reply(
    action: str,
    rewarded: bool,
    reason: str | None,
    points_minor: int,
    transaction_id: uuid.UUID | None,
    earn_rule_id: uuid.UUID | None,
    locked: LockedCustomer,
) -> ActionEnvelope:
    return ActionEnvelope(
        data=ActionResult(
            action=action,
            rewarded=rewarded,
            reason=reason,
            points=format_points(points_minor),
            transaction_id=transaction_id,
            earn_rule_id=earn_rule_id,
            points_balance=format_points(locked.points_balance_minor),
        )
    )
