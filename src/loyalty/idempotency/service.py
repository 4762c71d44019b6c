"""Idempotent writes (Stripe's rules).

The key is claimed in the same transaction as the write it protects, so the
stored response and the effect commit together or not at all. The same key
with the same request (method, path, query, body) replays the stored status
and body; with another request it is 422 ``idempotency_key_reused``. A
duplicate that arrives while the first is running waits for it and replays.
Business outcomes (2xx and business 4xx) are stored; validation failures
and server errors are not, so a corrected retry can reuse the key.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import (
    LoyaltyError,
    ValidationFailedError,
)
from loyalty.idempotency import repository
from loyalty.idempotency.errors import (
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
)

IDEMPOTENCY_KEY_CHARS_MAX = 255

Operation = Callable[[AsyncConnection], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    status_code: int
    body: bytes
    replayed: bool


def check_key(key: str) -> str:
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_CHARS_MAX or not key.isprintable():
        raise ValidationFailedError.for_field(
            "Idempotency-Key",
            f"must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable characters",
            location="header",
        )
    return key


def canonical_body(body: bytes) -> bytes:
    """JSON bodies compare by content (key order and spacing do not matter)."""
    if not body.strip():
        return b""
    try:
        return msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except (msgspec.DecodeError, TypeError, RecursionError):
        return body


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode(), canonical_body(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def error_body(error: LoyaltyError) -> bytes:
    return msgspec.json.encode(error.to_body())


async def execute(
    database: Database,
    merchant_id: uuid.UUID,
    key: str | None,
    request_fingerprint: str,
    operation: Operation,
) -> WriteResult:
    """Run ``operation`` once per key, in one transaction with the key's record."""
    if key is None:
        status_code, body = await database.transaction(operation)
        return WriteResult(status_code, body, replayed=False)

    async def _work(connection: AsyncConnection) -> WriteResult:
        stored = await repository.claim(
            connection, merchant_id, key, request_fingerprint, utc_now()
        )
        if stored is not None:
            if stored.request_fingerprint != request_fingerprint:
                raise IdempotencyKeyReusedError(
                    "This Idempotency-Key was used with a different request.",
                    {"idempotency_key": key},
                )
            if stored.response_status == repository.IN_PROGRESS_STATUS:
                raise IdempotencyRequestInProgressError(
                    "A request with this Idempotency-Key is still in progress; retry shortly.",
                    {"idempotency_key": key},
                )
            return WriteResult(stored.response_status, stored.response_body.encode(), True)
        savepoint = await connection.begin_nested()
        try:
            status_code, body = await operation(connection)
            await savepoint.commit()
        except LoyaltyError as error:
            await savepoint.rollback()
            if not error.replayable:
                raise
            status_code, body = error.status_code, error_body(error)
        await repository.complete(connection, merchant_id, key, status_code, body.decode())
        return WriteResult(status_code, body, replayed=False)

    return await database.transaction(_work)


async def purge_expired(database: Database, retention_days: int) -> int:
    """Delete records older than the retention (at least 7 days)."""
    cutoff = utc_now() - timedelta(days=max(retention_days, 7))

    async def _work(connection: AsyncConnection) -> int:
        return await repository.purge_older_than(connection, cutoff)

    return await database.transaction(_work)
