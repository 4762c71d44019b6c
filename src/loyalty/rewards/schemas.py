from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

RewardType = Literal[
    "fixed_discount", "percentage_discount", "free_shipping", "free_product", "store_credit"
]
CustomerRewardStatus = Literal["active", "used", "inactive", "expired", "deleted", "revert"]


class RedeemableReward(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    description: str | None
    reward_type: RewardType
    points_cost: float
    reward_rule: dict[str, Any]
    can_redeem: bool
    points_needed: float


class CustomerReward(msgspec.Struct, frozen=True):
    id: uuid.UUID
    reward_type: RewardType | None
    status: CustomerRewardStatus
    discount_code: str | None
    points_used: float
    expires_at: datetime | None
    used_at: datetime | None
    created_at: datetime


class Redeemable(msgspec.Struct, frozen=True):
    points_balance: float
    rewards: list[RedeemableReward]
    customer_rewards: list[CustomerReward]


class RedeemableEnvelope(msgspec.Struct, frozen=True):
    data: Redeemable
