"""One error base class; every error the API can answer is a subclass.

Services raise these; the HTTP layer renders them as
``{"error": {"code", "message", "details"}}`` with the class's status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LoyaltyError(Exception):
    """Base of every error a client can receive."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    # Whether a response carrying this error may be stored under an
    # Idempotency-Key and replayed (business outcomes yes, transient no).
    replayable: ClassVar[bool] = True

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidJSONError(LoyaltyError):
    status_code = 400
    code = "invalid_json"
    replayable = False


class ValidationFailedError(LoyaltyError):
    status_code = 422
    code = "validation_error"
    replayable = False

    @classmethod
    def for_field(cls, field: str, message: str, location: str = "body") -> ValidationFailedError:
        return cls(
            f"Invalid {field}: {message}",
            [{"field": field, "location": location, "message": message}],
        )


class UnauthorizedError(LoyaltyError):
    status_code = 401
    code = "unauthorized"
    replayable = False


class InsufficientScopeError(LoyaltyError):
    status_code = 403
    code = "insufficient_scope"
    replayable = False


class NotFoundError(LoyaltyError):
    status_code = 404
    code = "not_found"


class ConflictError(LoyaltyError):
    status_code = 409
    code = "conflict"


class BusinessRuleError(LoyaltyError):
    status_code = 422
    code = "unprocessable"


class ServiceUnavailableError(LoyaltyError):
    status_code = 503
    code = "service_unavailable"
    replayable = False


def invariant(condition: bool, message: str) -> None:
    """Check a programmer's invariant; unlike ``assert`` it survives ``python -O``."""
    if not condition:
        raise AssertionError(f"invariant violated: {message}")
