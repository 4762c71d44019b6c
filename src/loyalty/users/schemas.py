from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class User(msgspec.Struct, frozen=True):
    """A staff user: ``admin`` runs everything; ``support`` views customers, adjusts
    points and changes a status."""

    id: uuid.UUID
    email: str
    role: str
    merchant_id: uuid.UUID
    created_at: datetime
    disabled_at: datetime | None = None
