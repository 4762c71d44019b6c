from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

CustomerIdText = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        description="The shop platform's customer id, e.g. a Shopify customer id.",
        examples=["9049402769586"],
    ),
]
# The address as sent may be surrounded by spaces; it is stored trimmed and lower-cased.
EMAIL_PATTERN = r"^\s*[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;.]{2,}\s*$"
EmailText = Annotated[
    str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN, examples=["ada@example.com"])
]
NameText = Annotated[str, msgspec.Meta(max_length=100)]


class EnrolCustomer(msgspec.Struct, forbid_unknown_fields=True):
    """Enrol a customer, or update the given fields of an enrolled one."""

    customer_id: CustomerIdText
    email: EmailText | msgspec.UnsetType | None = msgspec.UNSET
    first_name: NameText | msgspec.UnsetType | None = msgspec.UNSET
    last_name: NameText | msgspec.UnsetType | None = msgspec.UNSET
    date_of_birth: date | msgspec.UnsetType | None = msgspec.UNSET
    # Another customer's referral code: that customer referred this one (recorded
    # once, before the first order; the first order completes the referral).
    referral_code: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


CustomerStatus = Literal["active", "inactive", "excluded", "excluded_by_customer"]


class ChangeCustomerStatus(msgspec.Struct, forbid_unknown_fields=True):
    """``active`` customers earn and redeem; ``inactive`` ones redeem but do not
    earn; ``excluded`` (by the merchant) and ``excluded_by_customer`` (the
    customer opted out) neither earn nor redeem. Manual adjustments work for
    every status. ``reason`` is a staff note kept with the status."""

    status: CustomerStatus
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


ActionType = Literal[
    "create_account", "newsletter", "sms", "follow_facebook", "follow_instagram",
    "follow_tiktok", "follow_twitter", "follow_pinterest", "follow_youtube", "share_facebook",
    "share_twitter",
]  # fmt: skip


class PostAction(msgspec.Struct, forbid_unknown_fields=True):
    """Something the customer did that the programme may reward (birthdays are
    rewarded by the scheduler, referrals by the referred customer's first order)."""

    action: ActionType


class ActionResult(msgspec.Struct, frozen=True):
    action: str
    rewarded: bool
    # Why not: no_rule, rule_inactive, limit_reached, customer_inactive, customer_excluded...
    reason: str | None
    points: float
    transaction_id: uuid.UUID | None
    earn_rule_id: uuid.UUID | None
    points_balance: float


class ActionEnvelope(msgspec.Struct, frozen=True):
    data: ActionResult


class TierRef(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


class Customer(msgspec.Struct, frozen=True):
    """A customer with every balance. Points are numbers (integers unless the
    programme allows decimals)."""

    id: uuid.UUID
    # The platform id; null once the customer is erased (the id is free again).
    customer_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    date_of_birth: date | None
    status: str
    status_reason: str | None
    points_balance: float
    pending_points: float
    lifetime_points: float
    points_spent: float
    points_expired: float
    store_credit_balance: float
    # The next points to expire and when (the next lot, or the whole balance
    # at the inactivity deadline); 0 and null when nothing is due to expire.
    expiring_points: float
    points_expire_at: datetime | None
    tier: TierRef | None
    # Set while the tier is kept by retention only: it lapses then.
    tier_expires_at: datetime | None
    next_tier: TierRef | None
    # Points (or money, for amount_spent tiers) still needed for next_tier.
    amount_to_next_tier: float | None
    # Actions the programme has rewarded this customer for (earn rule types).
    rewarded_actions: list[str]
    # Referrals this customer made that were completed (the friend's first order).
    referred_completed: int
    total_spent: float
    created_at: datetime
    updated_at: datetime


class CustomerEnvelope(msgspec.Struct, frozen=True):
    data: Customer


class Referral(msgspec.Struct, frozen=True):
    """The customer's referral code (shared with friends) and its referrals."""

    customer_id: str
    referral_code: str
    referred_completed: int
    # Who referred this customer (platform id) and when its first order completed it.
    referred_by: str | None
    referral_completed_at: datetime | None


class ReferralEnvelope(msgspec.Struct, frozen=True):
    data: Referral


# The customer list (GET /api/v1/customers).


class CustomerPage(msgspec.Struct, frozen=True):
    """A page of customers; ``next_cursor`` is null on the last page. Tier
    progress (``next_tier``, ``amount_to_next_tier``) is null in the list."""

    data: list[Customer]
    next_cursor: str | None
