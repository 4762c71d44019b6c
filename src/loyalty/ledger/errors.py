"""Errors a points movement can answer."""

from __future__ import annotations

from loyalty.customers.refs import CustomerNotFoundError
from loyalty.idempotency.errors import (
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
)
from loyalty.ledger.engine.errors import BalanceLimitExceededError, InsufficientPointsError

__all__ = [
    "BalanceLimitExceededError",
    "CustomerNotFoundError",
    "IdempotencyKeyReusedError",
    "IdempotencyRequestInProgressError",
    "InsufficientPointsError",
]
