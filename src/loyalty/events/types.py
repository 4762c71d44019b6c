"""Every event type the API writes (webhook endpoints and the feed filter by them)."""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "transaction.created",
    "points.transferred",
    "customer.created",
    "customer.updated",
    "customer.status_changed",
    "customer.tier_changed",
    "customer.action_rewarded",
    "customer.erased",
    "customer_reward.redeemed",
    "customer_reward.used",
    "customer_reward.reverted",
    "customer_reward.expired",
    "customer_reward.deactivated",
    "customer_reward.reactivated",
    "customer_reward.deleted",
    "pending_points.created",
    "pending_points.released",
    "pending_points.cancelled",
    "pending_points.reduced",
    "reward.created",
    "reward.updated",
    "reward.deleted",
    "tier.created",
    "tier.updated",
    "earn_rule.created",
    "earn_rule.updated",
    "settings.updated",
    "order.placed",
    "order.refunded",
    "referral.completed",
    "webhook.test",
    "webhook_endpoint.disabled",
)
KNOWN = frozenset(EVENT_TYPES)
# Sent only to the endpoint the event names (its subject).
WEBHOOK_TEST = "webhook.test"
ENDPOINT_DISABLED = "webhook_endpoint.disabled"
