from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

RewardType = Literal[
    "fixed_discount", "percentage_discount", "free_shipping", "free_product", "store_credit"
]
CustomerRewardStatus = Literal["active", "used", "inactive", "expired", "deleted", "revert"]


RewardName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
RewardDescription = Annotated[str, msgspec.Meta(max_length=500)]
PointsCost = Annotated[float, msgspec.Meta(gt=0, description="Points a redemption costs.")]
ValidityDays = Annotated[
    int, msgspec.Meta(ge=1, le=3650, description="Days a discount code stays valid.")
]
MoneyAmount = Annotated[
    float, msgspec.Meta(ge=0, description="In the shop's currency, at most 2 decimals.")
]
CustomerLimit = Annotated[
    int, msgspec.Meta(ge=1, le=1_000_000, description="Redemptions per customer, at most.")
]


class CreateReward(msgspec.Struct, forbid_unknown_fields=True):
    """A catalogue reward. ``reward_rule`` depends on ``reward_type``:
    fixed_discount ``{discount_value}``, percentage_discount
    ``{discount_percentage}`` (1-100), free_shipping ``{max_shipping_amount?}``,
    free_product ``{product_id and/or variant_id}``, store_credit
    ``{credit_amount}``; each may repeat ``points_required`` (= points_cost)."""

    name: RewardName
    reward_type: RewardType
    points_cost: PointsCost
    reward_rule: dict[str, Any]
    description: RewardDescription | None = None
    active: bool = True
    code_validity_days: ValidityDays | None = None
    minimum_order_amount: MoneyAmount | None = None
    per_customer_limit: CustomerLimit | None = None


class UpdateReward(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent; ``null`` clears an optional one."""

    name: RewardName | msgspec.UnsetType = msgspec.UNSET
    reward_type: RewardType | msgspec.UnsetType = msgspec.UNSET
    points_cost: PointsCost | msgspec.UnsetType = msgspec.UNSET
    reward_rule: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    description: RewardDescription | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    code_validity_days: ValidityDays | msgspec.UnsetType | None = msgspec.UNSET
    minimum_order_amount: MoneyAmount | msgspec.UnsetType | None = msgspec.UNSET
    per_customer_limit: CustomerLimit | msgspec.UnsetType | None = msgspec.UNSET


class Reward(msgspec.Struct, frozen=True):
    id: uuid.UUID
    number: int
    name: str
    description: str | None
    reward_type: RewardType
    points_cost: float
    reward_rule: dict[str, Any]
    active: bool
    code_validity_days: int | None
    minimum_order_amount: float | None
    per_customer_limit: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class RewardEnvelope(msgspec.Struct, frozen=True):
    data: Reward


class RewardPage(msgspec.Struct, frozen=True):
    data: list[Reward]
    next_cursor: str | None


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


class CustomerRewardDetail(msgspec.Struct, frozen=True):
    """A reward a customer redeemed: its code, its state, what it cost."""

    id: uuid.UUID
    # The holder's platform id; null once the holder is erased.
    customer_id: str | None
    reward_id: uuid.UUID
    reward_type: RewardType
    name: str
    reward_rule: dict[str, Any]
    status: CustomerRewardStatus
    discount_code: str | None
    points_used: float
    store_credit: float | None
    order_id: str | None
    transaction_id: uuid.UUID
    revert_transaction_id: uuid.UUID | None
    expires_at: datetime | None
    used_at: datetime | None
    reverted_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CustomerRewardMovement(CustomerRewardDetail, frozen=True):
    """A redemption or a refund, with the balance it left."""

    points_balance: float


class CustomerRewardEnvelope(msgspec.Struct, frozen=True):
    data: CustomerRewardDetail


class CustomerRewardMovementEnvelope(msgspec.Struct, frozen=True):
    data: CustomerRewardMovement


class RedeemReward(msgspec.Struct, forbid_unknown_fields=True):
    reward_id: str


class UseReward(msgspec.Struct, forbid_unknown_fields=True):
    """``order_id``: the order the code was used on (optional)."""

    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None


class ChangeCustomerRewardStatus(msgspec.Struct, forbid_unknown_fields=True):
    """``inactive`` suspends a code, ``active`` restores it, ``deleted`` is final."""

    status: Literal["active", "inactive", "deleted"]


class Redeemable(msgspec.Struct, frozen=True):
    points_balance: float
    rewards: list[RedeemableReward]
    customer_rewards: list[CustomerReward]


class RedeemableEnvelope(msgspec.Struct, frozen=True):
    data: Redeemable
