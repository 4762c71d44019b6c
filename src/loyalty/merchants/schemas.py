from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec


class Merchant(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    created_at: datetime


class ProgramSettings(msgspec.Struct, frozen=True):
    merchant_id: uuid.UUID
    points_decimals: int
    default_description: str
    discount_code_prefix: str


ExpiryPolicy = Literal["none", "fixed", "inactivity"]
ExpiryDays = Annotated[int, msgspec.Meta(ge=1, le=3650)]


class ProgramSettingsView(msgspec.Struct, frozen=True):
    points_decimals: int
    default_description: str
    discount_code_prefix: str
    expiry_policy: ExpiryPolicy
    expiry_days: int | None
    # When the expiry policy last changed (inactivity counts from here at the earliest).
    expiry_changed_at: datetime | None
    # ISO 4217 code of the shop's money: orders must be in it.
    currency: str
    updated_at: datetime
    # The money value of one point (the dashboard values outstanding points with it).
    point_value: float = 0.01


class ProgramSettingsEnvelope(msgspec.Struct, frozen=True):
    data: ProgramSettingsView


class UpdateProgramSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent.

    ``points_decimals``: 0 (whole points), 1 or 2; ``default_description``: the
    activity-log text of movements sent without one; ``discount_code_prefix``:
    up to 12 letters or digits leading every new discount code (empty: none);
    ``expiry_policy``: ``none``, ``fixed`` (each credit expires ``expiry_days``
    after it is earned; debits spend the earliest-expiring points first) or
    ``inactivity`` (the whole balance expires after ``expiry_days`` without
    earning or redeeming). A policy change applies from now on: never
    retroactive. Preview one with ``POST /api/v1/settings/program/preview``.
    ``point_value``: the money value of one point in ``currency`` (default 0.01,
    up to 6 decimals); the dashboard values the points outstanding with it.
    """

    points_decimals: Annotated[int, msgspec.Meta(ge=0, le=2)] | msgspec.UnsetType = msgspec.UNSET
    default_description: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | msgspec.UnsetType
    ) = msgspec.UNSET
    discount_code_prefix: Annotated[str, msgspec.Meta(max_length=12)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    expiry_policy: ExpiryPolicy | msgspec.UnsetType = msgspec.UNSET
    expiry_days: ExpiryDays | msgspec.UnsetType | None = msgspec.UNSET
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    point_value: Annotated[float, msgspec.Meta(ge=0, le=1000)] | msgspec.UnsetType = msgspec.UNSET


class PreviewExpiry(msgspec.Struct, forbid_unknown_fields=True):
    """A proposed expiry policy (``expiry_days`` required unless ``none``)."""

    expiry_policy: ExpiryPolicy
    expiry_days: ExpiryDays | None = None


class ExpiryImpact(msgspec.Struct, frozen=True):
    customers: int
    points: float


class ExpiryPreview(msgspec.Struct, frozen=True):
    """What saving the proposed policy would change, computed now, saving nothing.

    ``newly_expiring``: customers and points that would start to expire
    (inactivity: whole balances, first at ``first_expiry_at`` at the earliest,
    since the count starts when the policy is saved). ``no_longer_expiring``:
    points the current inactivity policy would no longer expire. ``dated``:
    points already in lots with an expiry date, which keep it whatever the
    policy (enabling expiry is never retroactive; dates given are kept).
    ``expiring_now``: what would expire the moment it is saved (always 0:
    no policy change expires points at once)."""

    expiry_policy: ExpiryPolicy
    expiry_days: int | None
    current_expiry_policy: ExpiryPolicy
    current_expiry_days: int | None
    newly_expiring: ExpiryImpact
    no_longer_expiring: ExpiryImpact
    dated: ExpiryImpact
    expiring_now: ExpiryImpact
    first_expiry_at: datetime | None


class ExpiryPreviewEnvelope(msgspec.Struct, frozen=True):
    data: ExpiryPreview
