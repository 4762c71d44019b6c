"""Errors a points movement can answer."""

from __future__ import annotations

from loyalty.customers.service import CustomerNotFoundError
from loyalty.errors import BusinessRuleError
from loyalty.idempotency.service import (
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
)

__all__ = [
    "BalanceLimitExceededError",
    "CustomerNotFoundError",
    "IdempotencyKeyReusedError",
    "IdempotencyRequestInProgressError",
    "InsufficientPointsError",
]


class InsufficientPointsError(BusinessRuleError):
    code = "insufficient_points"


class BalanceLimitExceededError(BusinessRuleError):
    code = "balance_limit_exceeded"
