"""Rendering of every error as ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.base_exceptions import SerializationException
from litestar.types import ExceptionHandlersMap

from loyalty.compat.surfaces import Surface, error_body, surface_of
from loyalty.db.engine import is_unavailable
from loyalty.decoding import field_named
from loyalty.errors import InvalidJSONError, LoyaltyError, UnauthorizedError
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
WWW_AUTHENTICATE = 'Bearer realm="loyalty"'


def surface_status(surface: Surface, status_code: int, code: str) -> int:
    """The status a surface's clients expect for this outcome."""
    if surface == "yotpo" and code == "customer_not_found":
        return 422  # Yotpo answers an unknown customer as invalid input
    if surface in ("bonifiq", "appstle") and status_code == 422:
        return 400  # their validation and business failures are 400s
    return status_code


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
    path: str = "/",
) -> Response[bytes]:
    surface = surface_of(path)
    status_code = surface_status(surface, status_code, code)
    body = error_body(surface, status_code, code, message, details, path)
    all_headers = dict(headers or {})
    if status_code == 401:
        all_headers.setdefault("WWW-Authenticate", _challenge(surface))
    return Response(
        content=body, status_code=status_code, media_type="application/json", headers=all_headers
    )


def outcome_error(outcome: Outcome, path: str) -> Response[bytes]:
    """A refused write's answer (stored in the native shape) in the surface's shape."""
    error = msgspec.json.decode(outcome.body)["error"]
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else None
    return error_response(
        outcome.status_code, error["code"], error["message"], error["details"], headers, path
    )


def _challenge(surface: Surface) -> str:
    return 'Basic realm="loyalty"' if surface == "bonifiq" else WWW_AUTHENTICATE


def _loyalty_error(request: Request[Any, Any, Any], error: LoyaltyError) -> Response[bytes]:
    headers = None
    if isinstance(error, UnauthorizedError) and surface_of(request.url.path) == "native":
        headers = {"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'}
    return error_response(
        error.status_code, error.code, error.message, error.details, headers, request.url.path
    )


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
        return error_response(
            422,
            "validation_error",
            f"Invalid {fields}: {message}",
            details,
            path=request.url.path,
        )
    if isinstance(error.__cause__, SerializationException) or (
        error.status_code == 400 and "JSON" in str(error.detail)
    ):
        text = str(error.detail)
        if "out of range" in text:
            return error_response(
                422,
                "validation_error",
                "A number in the body is out of range.",
                [{"field": "body", "location": "body", "message": text}],
                path=request.url.path,
            )
        invalid = InvalidJSONError("The request body is not valid JSON.", {"reason": text})
        return _loyalty_error(request, invalid)
    code = _STATUS_CODES.get(error.status_code, "error")
    if error.status_code >= 500:
        return _unexpected(request, error)
    return error_response(
        error.status_code, code, str(error.detail), None, error.headers, request.url.path
    )


def _too_deep(request: Request[Any, Any, Any], _error: RecursionError) -> Response[bytes]:
    invalid = InvalidJSONError("The request body is nested too deeply.", {"reason": "depth"})
    return _loyalty_error(request, invalid)


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    if is_unavailable(error) or is_unavailable(error.__cause__ or error):
        log.warning("database_unavailable", path=request.url.path, error=str(error))
        return error_response(
            503,
            "service_unavailable",
            "The database is unavailable; retry the request.",
            headers={"Retry-After": "1"},
            path=request.url.path,
        )
    log.exception("unhandled_error", path=request.url.path, method=request.method)
    return error_response(
        500, "internal_error", "An unexpected error occurred.", path=request.url.path
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    LoyaltyError: _loyalty_error,
    HTTPException: _http_exception,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
