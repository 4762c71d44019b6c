"""Errors of idempotent writes (a leaf module: the ledger engine raises them too)."""

from __future__ import annotations

from loyalty.errors import BusinessRuleError, ConflictError


class IdempotencyKeyReusedError(BusinessRuleError):
    code = "idempotency_key_reused"
    replayable = False


class IdempotencyRequestInProgressError(ConflictError):
    code = "idempotency_request_in_progress"
    replayable = False
