from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

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


class ProgramSettingsView(msgspec.Struct, frozen=True):
    points_decimals: int
    default_description: str
    discount_code_prefix: str
    updated_at: datetime


class ProgramSettingsEnvelope(msgspec.Struct, frozen=True):
    data: ProgramSettingsView


class UpdateProgramSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Change the fields sent.

    ``points_decimals``: 0 (whole points), 1 or 2; ``default_description``: the
    activity-log text of movements sent without one; ``discount_code_prefix``:
    up to 12 letters or digits leading every new discount code (empty: none).
    """

    points_decimals: Annotated[int, msgspec.Meta(ge=0, le=2)] | msgspec.UnsetType = msgspec.UNSET
    default_description: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | msgspec.UnsetType
    ) = msgspec.UNSET
    discount_code_prefix: Annotated[str, msgspec.Meta(max_length=12)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
