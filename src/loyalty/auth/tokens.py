"""API key tokens: ``lk_<prefix>_<secret>``.

The prefix (10 characters) is public and identifies the key; the secret
(32 base-62 characters, ~190 bits) is never stored: only the SHA-256 of the
whole token is. Tokens are compared by hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

TOKEN_PREFIX = "lk_"  # noqa: S105 (a public marker, not a secret)
PREFIX_CHARS = 10
SECRET_CHARS = 32
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
_TOKEN_PATTERN = re.compile(
    rf"^{TOKEN_PREFIX}([a-z0-9]{{{PREFIX_CHARS}}})_([A-Za-z0-9]{{{SECRET_CHARS}}})$"
)


def generate_token() -> tuple[str, str]:
    """Return ``(prefix, token)`` for a new key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_CHARS))
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secret}"


def token_prefix(token: str) -> str | None:
    """The key's prefix if ``token`` is well-formed, else None."""
    match = _TOKEN_PATTERN.match(token)
    return match.group(1) if match else None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_sha256: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_sha256)
