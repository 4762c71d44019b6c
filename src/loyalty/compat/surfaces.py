"""The API's surfaces: the native one and the vendor-compatible ones.

A surface is chosen by path. It decides how the API key is sent (Bearer,
Yotpo's ``x-guid``/``x-api-key``, Bonifiq's HTTP Basic, Appstle's
``X-API-Key``) and the shape errors take, so that a merchant's existing
integration code gets the answers it was written for. Business rules never
depend on the surface.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from loyalty.errors import UnauthorizedError

Surface = Literal["native", "yotpo", "bonifiq", "appstle"]

YOTPO_PREFIX = "/api/v2/points"
BONIFIQ_PREFIX = "/v1/pvt/"
APPSTLE_PREFIX = "/api/external/"

_encoder = msgspec.json.Encoder()


def surface_of(path: str) -> Surface:
    if path.startswith(YOTPO_PREFIX):
        return "yotpo"
    if path.startswith(BONIFIQ_PREFIX):
        return "bonifiq"
    if path.startswith(APPSTLE_PREFIX):
        return "appstle"
    return "native"


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str
    # Yotpo names the merchant too (x-guid); the key must belong to it.
    merchant_id: uuid.UUID | None = None


def _header(headers: Any, name: str) -> str:
    value: str = headers.get(name, "") or ""
    return value.strip()


def credentials(surface: Surface, headers: Any, query: Any) -> Credentials:
    """The API key as this surface sends it, or 401 in the surface's words."""
    if surface == "yotpo":
        token = _header(headers, "x-api-key") or str(query.get("api_key") or "").strip()
        guid = _header(headers, "x-guid") or str(query.get("guid") or "").strip()
        if not token or not guid:
            raise UnauthorizedError(
                "Send your API key as 'x-api-key' and your account as 'x-guid'."
            )
        try:
            merchant_id = uuid.UUID(guid)
        except ValueError as error:
            raise UnauthorizedError("The 'x-guid' is not an account of this service.") from error
        return Credentials(token, merchant_id)
    if surface == "bonifiq":
        scheme, _, encoded = _header(headers, "authorization").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise UnauthorizedError("Send your API key with HTTP Basic authentication.")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise UnauthorizedError("The Basic credentials are not valid base64.") from error
        username, _, password = decoded.partition(":")
        # The key is the username or the password; the other part may be anything.
        token = next((part for part in (username, password) if part.startswith("lk_")), "")
        if not token:
            raise UnauthorizedError("No API key in the Basic credentials.")
        return Credentials(token)
    if surface == "appstle":
        token = _header(headers, "x-api-key")
        if not token:
            raise UnauthorizedError("Send your API key in the 'X-API-Key' header.")
        return Credentials(token)
    scheme, _, token = _header(headers, "authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("Send your API key as 'Authorization: Bearer <key>'.")
    return Credentials(token.strip())


# Bonifiq's codes for outcomes (the two-digit `Code`, its `CodeName`).
BONIFIQ_CODES: dict[str, tuple[str, str]] = {
    "success": ("00", "Success"),
    "validation_error": ("01", "InvalidRequest"),
    "invalid_json": ("01", "InvalidRequest"),
    "insufficient_points": ("02", "InsufficientPoints"),
    "customer_not_found": ("03", "CustomerNotFound"),
    "change_key_used": ("04", "ChangeKeyAlreadyUsed"),
    "unauthorized": ("05", "Unauthorized"),
    "insufficient_scope": ("06", "Forbidden"),
    "rate_limited": ("07", "TooManyRequests"),
    "balance_limit_exceeded": ("08", "BalanceLimitExceeded"),
    "idempotency_key_reused": ("09", "IdempotencyKeyReused"),
    "idempotency_request_in_progress": ("10", "RequestInProgress"),
    "service_unavailable": ("98", "ServiceUnavailable"),
}
BONIFIQ_OTHER = ("99", "Error")


def bonifiq_envelope(
    result: Any,
    *,
    code: str = "success",
    message: str | None = None,
    error_code: int | None = None,
) -> dict[str, Any]:
    """Seed 003's response envelope."""
    number, name = BONIFIQ_CODES.get(code, BONIFIQ_OTHER)
    failed = code != "success"
    return {
        "Result": result,
        "Code": number,
        "CodeName": name,
        "Severity": 2 if failed else 0,
        "HasWarning": False,
        "HasError": failed,
        "ErrorMessage": message if failed else None,
        "ErrorCode": error_code,
    }


def error_body(
    surface: Surface, status_code: int, code: str, message: str, details: Any, path: str
) -> bytes:
    """An error in the shape the surface's clients expect."""
    if surface == "bonifiq":
        result = {"CustomerExists": False} if code == "customer_not_found" else None
        return _encoder.encode(
            bonifiq_envelope(result, code=code, message=message, error_code=status_code)
        )
    if surface == "appstle":
        # Appstle answers problem details (title, status, detail).
        return _encoder.encode(
            {
                "type": "about:blank",
                "title": code.replace("_", " ").capitalize(),
                "status": status_code,
                "detail": message,
                "path": path,
                "message": f"error.{code}",
                "errorKey": code,
            }
        )
    return _encoder.encode({"error": {"code": code, "message": message, "details": details}})
