from __future__ import annotations

from typing import Any

import msgspec


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """Every error answers this shape."""

    error: ErrorBody
