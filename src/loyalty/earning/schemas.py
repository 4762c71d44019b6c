from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

EarnRuleType = Literal[
    "purchase", "create_account", "newsletter", "sms", "follow_facebook", "follow_instagram",
    "follow_tiktok", "follow_twitter", "follow_pinterest", "follow_youtube", "share_facebook",
    "share_twitter", "birthday", "referral",
]  # fmt: skip
Rounding = Literal["down", "nearest", "up"]
Points = Annotated[float, msgspec.Meta(ge=0, description="Points (the programme's decimals).")]
Rate = Annotated[
    float, msgspec.Meta(gt=0, le=1_000_000, description="Points per currency unit spent.")
]
Money = Annotated[float, msgspec.Meta(ge=0, description="In the shop's currency, 2 decimals.")]
Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
# A holding period: 0, like null, means none (the points count at once).
HoldDays = Annotated[
    int,
    msgspec.Meta(
        ge=0,
        le=3650,
        description="Days an order's points are held as pending; 0 or null: no hold.",
    ),
]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class CreateEarnRule(msgspec.Struct, forbid_unknown_fields=True):
    """An earn rule; one per ``type``.

    ``purchase``: ``points_per_currency_unit`` times the order total, rounded by
    ``rounding`` (default ``down``), plus ``points`` as a fixed bonus per order
    (default 0), nothing below ``min_order_total``, held ``pending_days``
    (e.g. the return window; 0 or null: credited at once, stored as null); the
    customer's tier multiplies it. Actions:
    ``points`` per reward, at most ``max_per_customer`` times (default 1) per
    ``period_days`` (default: ever); ``birthday`` is yearly; ``referral`` gives
    ``points`` to the referrer and ``referee_points`` to the new customer.
    """

    type: EarnRuleType
    points: Points = 0
    active: bool = True
    points_per_currency_unit: Rate | None = None
    rounding: Rounding | None = None
    min_order_total: Money | None = None
    pending_days: HoldDays | None = None
    referee_points: Points | None = None
    max_per_customer: Limit | None = None
    period_days: Days | None = None


class UpdateEarnRule(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent (``type`` cannot change); ``null`` clears an optional one."""

    points: Points | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    points_per_currency_unit: Rate | msgspec.UnsetType = msgspec.UNSET
    rounding: Rounding | msgspec.UnsetType = msgspec.UNSET
    min_order_total: Money | msgspec.UnsetType | None = msgspec.UNSET
    pending_days: HoldDays | msgspec.UnsetType | None = msgspec.UNSET
    referee_points: Points | msgspec.UnsetType = msgspec.UNSET
    max_per_customer: Limit | msgspec.UnsetType | None = msgspec.UNSET
    period_days: Days | msgspec.UnsetType | None = msgspec.UNSET


class EarnRule(msgspec.Struct, frozen=True):
    id: uuid.UUID
    type: EarnRuleType
    points: float
    active: bool
    points_per_currency_unit: float | None
    rounding: Rounding | None
    min_order_total: float | None
    pending_days: int | None
    referee_points: float | None
    max_per_customer: int | None
    period_days: int | None
    created_at: datetime
    updated_at: datetime


class EarnRuleEnvelope(msgspec.Struct, frozen=True):
    data: EarnRule


class EarnRulePage(msgspec.Struct, frozen=True):
    data: list[EarnRule]
    next_cursor: str | None = None
