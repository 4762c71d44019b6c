"""Errors any posting can answer."""

from __future__ import annotations

from loyalty.errors import BusinessRuleError


class InsufficientPointsError(BusinessRuleError):
    code = "insufficient_points"


class BalanceLimitExceededError(BusinessRuleError):
    code = "balance_limit_exceeded"
