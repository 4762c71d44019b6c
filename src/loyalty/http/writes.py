"""The one way an endpoint performs a write: idempotently, in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth.schemas import Principal
from loyalty.db.engine import Database
from loyalty.idempotency import service as idempotency

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


async def request_idempotency(request: Request[Any, Any, Any]) -> tuple[str | None, str]:
    """The request's Idempotency-Key and, only when there is one, its fingerprint."""
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    if raw_key is None:
        return None, ""
    return idempotency_of(
        raw_key, request.method, request.url.path, request.url.query or "", await request.body()
    )


def idempotency_of(
    raw_key: str | None, method: str, path: str, query: str, body: bytes
) -> tuple[str | None, str]:
    """The checked Idempotency-Key and the request's fingerprint (none without a key)."""
    if raw_key is None:
        return None, ""
    return idempotency.check_key(raw_key), idempotency.fingerprint(method, path, query, body)


def outcome_response(status_code: int, body: bytes, replayed: bool) -> Response[Any]:
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    if status_code == 204:
        return Response(content=b"", status_code=204, headers=headers)
    return Response(
        content=body, status_code=status_code, media_type="application/json", headers=headers
    )


async def idempotent_write(
    request: Request[Any, Any, Any],
    principal: Principal,
    operation: Callable[[AsyncConnection], Awaitable[tuple[int, Any]]],
) -> Response[Any]:
    """Run ``operation`` (returning status and a body object) under the request's key."""
    key, fingerprint = await request_idempotency(request)

    async def _encoded(connection: AsyncConnection) -> tuple[int, bytes]:
        status_code, value = await operation(connection)
        return status_code, b"" if value is None else encode(value)

    database: Database = request.app.state.database
    result = await idempotency.execute(database, principal.merchant_id, key, fingerprint, _encoded)
    return outcome_response(result.status_code, result.body, result.replayed)
