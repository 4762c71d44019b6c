"""Rendering of every error in the shape and status of the request's surface
(natively ``{"error": {"code", "message", "details"}}``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.base_exceptions import SerializationException
from litestar.types import ExceptionHandlersMap

from loyalty.db.engine import is_unavailable
from loyalty.decoding import field_named
from loyalty.errors import InvalidJSONError, LoyaltyError, UnauthorizedError
from loyalty.http.surface import Surface, app_surface
from loyalty.http.writes import REPLAYED_HEADER
from loyalty.ledger.engine.protocol import Outcome

log = structlog.get_logger("loyalty.http")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error's status, headers and body, before any framework wraps them (the
    fast path sends it as it is; Litestar's handlers as a ``Response``)."""

    status_code: int
    headers: dict[str, str]
    body: bytes


def error_reply(
    surface: Surface,
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
    path: str = "/",
) -> ErrorReply:
    """An error as ``surface``'s clients expect it: its status, body and challenge."""
    status_code = surface.status(status_code, code)
    body = surface.error_body(status_code, code, message, details, path)
    all_headers = dict(headers or {})
    if status_code == 401:
        all_headers.setdefault("WWW-Authenticate", surface.challenge)
    return ErrorReply(status_code, all_headers, body)


def as_response(reply: ErrorReply) -> Response[bytes]:
    return Response(
        content=reply.body,
        status_code=reply.status_code,
        media_type="application/json",
        headers=reply.headers,
    )


def loyalty_error_reply(surface: Surface, error: LoyaltyError, path: str) -> ErrorReply:
    """A ``LoyaltyError`` (a refused key, a missing customer…) in the surface's shape."""
    headers = None
    if isinstance(error, UnauthorizedError) and surface.key_refused_challenge is not None:
        headers = {"WWW-Authenticate": surface.key_refused_challenge}
    return error_reply(
        surface, error.status_code, error.code, error.message, error.details, headers, path
    )


def unexpected_reply(surface: Surface, error: Exception, path: str, method: str) -> ErrorReply:
    """503 when the database is unreachable (retry), else a logged 500 (no details)."""
    if is_unavailable(error) or is_unavailable(error.__cause__ or error):
        log.warning("database_unavailable", path=path, error=str(error))
        return error_reply(
            surface,
            503,
            "service_unavailable",
            "The database is unavailable; retry the request.",
            headers={"Retry-After": "1"},
            path=path,
        )
    log.exception("unhandled_error", path=path, method=method)
    return error_reply(surface, 500, "internal_error", "An unexpected error occurred.", path=path)


def outcome_error(surface: Surface, outcome: Outcome, path: str) -> Response[bytes]:
    """A refused write's answer (stored in the native shape) in the surface's shape."""
    error = msgspec.json.decode(outcome.body)["error"]
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else None
    return as_response(
        error_reply(
            surface,
            outcome.status_code,
            error["code"],
            error["message"],
            error["details"],
            headers,
            path,
        )
    )


def _request_error(
    request: Request[Any, Any, Any],
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    surface = app_surface(request.app, request.url.path)
    reply = error_reply(surface, status_code, code, message, details, headers, request.url.path)
    return as_response(reply)


def _loyalty_error(request: Request[Any, Any, Any], error: LoyaltyError) -> Response[bytes]:
    surface = app_surface(request.app, request.url.path)
    return as_response(loyalty_error_reply(surface, error, request.url.path))


def _validation_details(extra: Any) -> list[dict[str, str]]:
    details: list[dict[str, str]] = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message") or "is invalid")
            source = item.get("source") or "body"
            details.append(
                {
                    "field": field_named(message, str(item.get("key") or "")),
                    "location": str(getattr(source, "value", source)),
                    "message": message,
                }
            )
    return details


def _http_exception(request: Request[Any, Any, Any], error: HTTPException) -> Response[bytes]:
    if isinstance(error, ValidationException):
        details = _validation_details(error.extra)
        fields = ", ".join(sorted({item["field"] for item in details})) or "request"
        message = details[0]["message"] if len(details) == 1 else "The request is invalid."
        return _request_error(
            request, 422, "validation_error", f"Invalid {fields}: {message}", details
        )
    if isinstance(error.__cause__, SerializationException) or (
        error.status_code == 400 and "JSON" in str(error.detail)
    ):
        text = str(error.detail)
        if "out of range" in text:
            return _request_error(
                request,
                422,
                "validation_error",
                "A number in the body is out of range.",
                [{"field": "body", "location": "body", "message": text}],
            )
        invalid = InvalidJSONError("The request body is not valid JSON.", {"reason": text})
        return _loyalty_error(request, invalid)
    code = _STATUS_CODES.get(error.status_code, "error")
    if error.status_code >= 500:
        return _unexpected(request, error)
    return _request_error(request, error.status_code, code, str(error.detail), None, error.headers)


def _too_deep(request: Request[Any, Any, Any], _error: RecursionError) -> Response[bytes]:
    invalid = InvalidJSONError("The request body is nested too deeply.", {"reason": "depth"})
    return _loyalty_error(request, invalid)


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    surface = app_surface(request.app, request.url.path)
    return as_response(unexpected_reply(surface, error, request.url.path, request.method))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoyaltyError: _loyalty_error,
    HTTPException: _http_exception,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
