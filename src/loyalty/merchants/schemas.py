from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class Merchant(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    created_at: datetime


class ProgramSettings(msgspec.Struct, frozen=True):
    merchant_id: uuid.UUID
    points_decimals: int
    default_description: str
