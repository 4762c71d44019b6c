from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: one API key of one merchant, with its scopes."""

    merchant_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]
    rate_limit: str | None = None
    # The audit trail's name for it: api_key:<prefix>.
    actor: str = "api_key:unknown"


class ApiKey(msgspec.Struct, frozen=True):
    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    rate_limit: str | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedApiKey(msgspec.Struct, frozen=True):
    """A new key; ``token`` is shown this once and never stored."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    name: str
    prefix: str
    token: str
    scopes: list[str]
    rate_limit: str | None
    created_at: datetime
