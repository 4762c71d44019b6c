"""The scopes an API key can hold."""

from __future__ import annotations

ALL_SCOPES: tuple[str, ...] = (
    "customers:read",
    "customers:write",
    "transactions:read",
    "transactions:write",
    "rewards:read",
    "rewards:write",
    "orders:write",
    "settings:read",
    "settings:write",
    "webhooks:read",
    "webhooks:write",
)
ALL = "all"


class UnknownScopeError(ValueError):
    pass


def parse_scopes(text: str) -> list[str]:
    """Parse ``a:b,c:d`` (or ``all``) into a sorted list of known scopes."""
    requested = [part.strip() for part in text.split(",") if part.strip()]
    if not requested:
        raise UnknownScopeError("at least one scope is required")
    if ALL in requested:
        return list(ALL_SCOPES)
    unknown = sorted(set(requested) - set(ALL_SCOPES))
    if unknown:
        raise UnknownScopeError(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}, all"
        )
    return sorted(set(requested), key=ALL_SCOPES.index)
