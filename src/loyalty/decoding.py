"""Decoding JSON strictly with msgspec, errors in the API's shape (no HTTP here).

Litestar converts bodies leniently (the string "5" would pass as the number
5). A points API must not guess: bodies, and JSON stored in rules, are decoded
again with msgspec's strict decoder.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from loyalty.errors import InvalidJSONError, ValidationFailedError

T = TypeVar("T")
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required field|unknown field) `(?P<field>[^`]+)`")


def field_named(message: str, field: str) -> str:
    """The field a whole-object error is about ("missing required field `points`")."""
    if field in {"", "body", "data"}:
        match = _NAMED_FIELD.search(message)
        return match.group("field") if match else "body"
    return field


def validation_error(error: msgspec.ValidationError) -> ValidationFailedError:
    text = str(error)
    match = _PATH.search(text)
    message = text[: match.start()] if match else text
    path = match.group("path") if match else ""
    field = field_named(message, path.lstrip("."))
    return ValidationFailedError(
        f"Invalid {field}: {message}", [{"field": field, "location": "body", "message": message}]
    )


def decode_strict(raw: bytes, model: type[T]) -> T:
    if not raw.strip():
        raise ValidationFailedError(
            "The request body is required.",
            [{"field": "body", "location": "body", "message": "a JSON object is required"}],
        )
    try:
        return msgspec.json.decode(raw, type=model, strict=True)
    except msgspec.ValidationError as error:
        raise validation_error(error) from error
    except msgspec.DecodeError as error:
        raise InvalidJSONError(
            "The request body is not valid JSON.", {"reason": str(error)}
        ) from error
