"""The admin's secret key and what is derived from it: session tokens, CSRF tokens.

The key is ``LOYALTY_SECRET_KEY`` when set (at least 32 characters); otherwise
the instance generates 32 random bytes on its first start and keeps them in
``instance_secrets`` (``admin_secret_key``), so every worker and every later
start use the same key. It is read once, when the app starts.

- A session cookie is ``<merchant_id>.<token>``; the database keeps only
  SHA-256(token), so a copy of the table opens no session.
- A session's CSRF token is HMAC-SHA256(key, "csrf:" + SHA-256(token)), so it
  needs no storage and changes with every session.
- The sign-in form, which has no session yet, is a double submit: a random
  value in a short-lived cookie, and HMAC-SHA256(key, "login:" + value) in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin import repository
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.settings import SECRET_KEY_CHARS_MIN, Settings

SECRET_NAME = "admin_secret_key"  # noqa: S105 (the row's name, not a secret)
SECRET_BYTES = 32


class SecretKeyError(ValueError):
    """LOYALTY_SECRET_KEY is too short to sign anything."""


async def load_secret_key(database: Database, settings: Settings) -> bytes:
    """The key: the configured one, else the instance's own (generated once)."""
    if settings.secret_key is not None:
        if len(settings.secret_key) < SECRET_KEY_CHARS_MIN:
            raise SecretKeyError(
                f"LOYALTY_SECRET_KEY must be at least {SECRET_KEY_CHARS_MIN} characters"
            )
        return settings.secret_key.encode()
    proposed = secrets.token_urlsafe(SECRET_BYTES)

    async def work(connection: AsyncConnection) -> str:
        return await repository.keep_secret(connection, SECRET_NAME, proposed, utc_now())

    return (await database.transaction(work)).encode()


def sign(key: bytes, purpose: str, value: str) -> str:
    """HMAC-SHA256 of ``purpose:value``, hex."""
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(key: bytes, session_token_hash: str) -> str:
    return sign(key, "csrf", session_token_hash)


def login_csrf_token(key: bytes, cookie_value: str) -> str:
    return sign(key, "login", cookie_value)


def session_cookie_value(merchant_id: uuid.UUID, token: str) -> str:
    return f"{merchant_id}.{token}"


def parse_session_cookie(value: str | None) -> tuple[uuid.UUID, str] | None:
    """(merchant id, token) from a cookie; None when it is not one of ours."""
    if not value or "." not in value:
        return None
    merchant_part, _, token = value.partition(".")
    try:
        merchant_id = uuid.UUID(merchant_part)
    except ValueError:
        return None
    if not token or len(token) > 128:
        return None
    return merchant_id, token
