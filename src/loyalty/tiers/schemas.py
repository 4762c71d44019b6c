from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

TierBasis = Literal["lifetime_points", "amount_spent"]
TierName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Threshold = Annotated[
    float,
    msgspec.Meta(
        ge=0,
        description=(
            "Reached when the customer's basis is at least this (points, or money in the "
            "shop's currency for amount_spent)."
        ),
    ),
]
WindowDays = Annotated[
    int,
    msgspec.Meta(
        ge=1, le=3650, description="Count only the last N days (rolling); null: all time."
    ),
]
Multiplier = Annotated[
    float,
    msgspec.Meta(ge=1, le=10, description="Earning multiplier of the tier (1 to 10, 2 decimals)."),
]
RetentionDays = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=3650,
        description="Days a customer keeps the tier after no longer qualifying; null: none.",
    ),
]


class CreateTier(msgspec.Struct, forbid_unknown_fields=True):
    """A VIP tier. ``basis`` and ``window_days`` belong to the programme: every
    tier shares them, and changing them on one tier changes them on all."""

    name: TierName
    threshold: Threshold
    basis: TierBasis | msgspec.UnsetType = msgspec.UNSET
    window_days: WindowDays | msgspec.UnsetType | None = msgspec.UNSET
    multiplier: Multiplier = 1
    retention_days: RetentionDays | None = None


class UpdateTier(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent; ``null`` clears ``window_days`` or ``retention_days``."""

    name: TierName | msgspec.UnsetType = msgspec.UNSET
    threshold: Threshold | msgspec.UnsetType = msgspec.UNSET
    basis: TierBasis | msgspec.UnsetType = msgspec.UNSET
    window_days: WindowDays | msgspec.UnsetType | None = msgspec.UNSET
    multiplier: Multiplier | msgspec.UnsetType = msgspec.UNSET
    retention_days: RetentionDays | msgspec.UnsetType | None = msgspec.UNSET


class Tier(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    threshold: float
    basis: TierBasis
    window_days: int | None
    multiplier: float
    retention_days: int | None
    created_at: datetime
    updated_at: datetime


class TierEnvelope(msgspec.Struct, frozen=True):
    data: Tier


class TierPage(msgspec.Struct, frozen=True):
    """Every tier of the programme, lowest threshold first."""

    data: list[Tier]
    next_cursor: str | None = None
