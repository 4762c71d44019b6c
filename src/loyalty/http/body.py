"""Strict request bodies.

Litestar converts bodies leniently (the string "5" would pass as the number
5). A points API must not guess, so handlers decode the raw body again with
msgspec's strict JSON decoder; the typed ``data`` parameter stays in the
signature for the OpenAPI document.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request

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


async def strict_body(request: Request[Any, Any, Any], model: type[T]) -> T:
    return decode_strict(await request.body(), model)
