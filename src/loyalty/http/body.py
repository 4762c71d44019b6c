"""Strict request bodies.

Litestar converts bodies leniently (the string "5" would pass as the number
5). A points API must not guess, so handlers decode the raw body again with
msgspec's strict JSON decoder; the typed ``data`` parameter stays in the
signature for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request

from loyalty.decoding import decode_strict

T = TypeVar("T")


async def strict_body(request: Request[Any, Any, Any], model: type[T]) -> T:
    return decode_strict(await request.body(), model)
