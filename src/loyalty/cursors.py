"""Opaque page cursors: ``kind:value`` in base64url, checked when read back."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from typing import Any

from loyalty.errors import ValidationFailedError


def encode_cursor(value: int | uuid.UUID, kind: str = "s") -> str:
    """An opaque cursor: ``kind:value``, base64url (``s``: a sequence or number,
    ``p``: a pending credit's id)."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def cursor_value(cursor: str, kind: str, parse: Callable[[str], Any]) -> str:
    """The value inside a cursor of ``kind`` this API returned (``parse`` must accept it)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        found, _, value = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
        if found != kind:
            raise ValueError(cursor)
        parse(value)
    except (ValueError, binascii.Error, UnicodeError) as error:
        raise ValidationFailedError.for_field(
            "cursor", "is not a cursor this API returned", location="query"
        ) from error
    return value
