from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

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


class TierRef(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


class Customer(msgspec.Struct, frozen=True):
    """A customer with every balance. Points are numbers (integers unless the
    programme allows decimals)."""

    id: uuid.UUID
    customer_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    date_of_birth: date | None
    status: str
    points_balance: float
    pending_points: float
    lifetime_points: float
    points_spent: float
    points_expired: float
    store_credit_balance: float
    expiring_points: float
    points_expire_at: datetime | None
    tier: TierRef | None
    total_spent: float
    created_at: datetime
    updated_at: datetime


class CustomerEnvelope(msgspec.Struct, frozen=True):
    data: Customer
