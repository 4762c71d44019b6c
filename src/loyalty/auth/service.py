"""API keys: creation (shown once), listing, revocation and authentication."""

from __future__ import annotations

import hmac
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.actors import api_key_actor
from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.auth import repository, tokens
from loyalty.auth.cache import evict_in_process
from loyalty.auth.schemas import ApiKey, CreatedApiKey, Principal
from loyalty.auth.scopes import parse_scopes
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import NotFoundError, UnauthorizedError, ValidationFailedError
from loyalty.ids import new_id
from loyalty.merchants import service as merchants_service
from loyalty.settings import RATE_LIMIT_PATTERN

KEY_NAME_CHARS_MAX = 200
RATE_LIMIT_AMOUNT_MAX = 1_000_000


class ApiKeyNotFoundError(NotFoundError):
    code = "api_key_not_found"


def parse_rate_limit(text: str) -> str:
    """Validate ``N/second|minute|hour`` (1 <= N <= 1,000,000) and return it normalised."""
    match = RATE_LIMIT_PATTERN.match(text.strip().lower())
    if match is None or int(match.group(1)) > RATE_LIMIT_AMOUNT_MAX:
        raise ValidationFailedError.for_field(
            "rate_limit", f"must look like 100/minute (N from 1 to {RATE_LIMIT_AMOUNT_MAX:,})"
        )
    return f"{int(match.group(1))}/{match.group(2)}"


async def create_key(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    scopes: str,
    name: str | None = None,
    rate_limit: str | None = None,
) -> CreatedApiKey:
    await merchants_service.get_merchant(connection, merchant_id)
    try:
        scope_list = parse_scopes(scopes)
    except ValueError as error:
        raise ValidationFailedError.for_field("scopes", str(error)) from error
    key_name = (name or "").strip() or "API key"
    if len(key_name) > KEY_NAME_CHARS_MAX:
        raise ValidationFailedError.for_field("name", f"at most {KEY_NAME_CHARS_MAX} characters")
    normalised_limit = parse_rate_limit(rate_limit) if rate_limit is not None else None
    prefix, token = tokens.generate_token()
    key = ApiKey(
        id=new_id(),
        merchant_id=merchant_id,
        name=key_name,
        prefix=prefix,
        scopes=scope_list,
        rate_limit=normalised_limit,
        created_at=utc_now(),
        revoked_at=None,
    )
    await repository.insert_key(connection, key, tokens.hash_token(token))
    # Known by its prefix in the audit trail; the token is never written down.
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="api_key",
        subject_id=key.prefix,
        action="created",
        summary=audit.describe(
            {"name": key.name, "scopes": key.scopes, "rate_limit": key.rate_limit}
        ),
        now=key.created_at,
    )
    return CreatedApiKey(
        id=key.id,
        merchant_id=key.merchant_id,
        name=key.name,
        prefix=key.prefix,
        token=token,
        scopes=key.scopes,
        rate_limit=key.rate_limit,
        created_at=key.created_at,
    )


async def list_keys(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[ApiKey]:
    await merchants_service.get_merchant(connection, merchant_id)
    return await repository.list_keys(connection, merchant_id)


async def revoke_key(connection: AsyncConnection, reference: str) -> ApiKey:
    """Revoke by id or prefix; effective for the very next request."""
    found = await repository.find_by_id_or_prefix(connection, reference.strip())
    if len(found) != 1:
        raise ApiKeyNotFoundError(f"No API key with id or prefix {reference!r}.")
    key = found[0]
    revoked_at = await repository.mark_revoked(connection, key, utc_now())
    if key.revoked_at is None:  # revoking again changes nothing
        await audit_repository.record_change(
            connection,
            merchant_id=key.merchant_id,
            subject_type="api_key",
            subject_id=key.prefix,
            action="revoked",
            summary=audit.describe({"name": key.name}),
            now=revoked_at,
        )
    # Every process drops the key from its cache when this transaction commits;
    # this one drops it now.
    await repository.announce_revocation(connection, key.prefix)
    evict_in_process(key.prefix)
    return ApiKey(
        id=key.id,
        merchant_id=key.merchant_id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        rate_limit=key.rate_limit,
        created_at=key.created_at,
        revoked_at=revoked_at,
    )


async def authenticate(database: Database, token: str) -> Principal:
    """Resolve a token to its principal; any failure is the same 401."""
    token_sha256 = tokens.hash_token(token)
    cached = database.key_cache.get(token_sha256)
    if cached is not None:
        return cached
    prefix = tokens.token_prefix(token)
    found = await repository.find_by_prefix(database, prefix) if prefix else None
    if found is None:
        # Hash anyway so that unknown and wrong tokens take the same time.
        tokens.token_matches(token, "0" * 64)
        raise UnauthorizedError("The API key is missing, invalid or revoked.")
    key, stored_hash = found
    if not hmac.compare_digest(token_sha256, stored_hash) or key.revoked_at is not None:
        raise UnauthorizedError("The API key is missing, invalid or revoked.")
    principal = Principal(
        merchant_id=key.merchant_id,
        key_id=key.id,
        scopes=frozenset(key.scopes),
        rate_limit=key.rate_limit,
        actor=api_key_actor(key.prefix),
    )
    database.key_cache.put(token_sha256, key.prefix, principal)
    return principal
