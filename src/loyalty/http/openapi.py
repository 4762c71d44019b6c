"""OpenAPI helpers: every route lists the errors it can answer."""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec

from loyalty.http.schemas import ErrorEnvelope

# Every API operation requires a key; /healthz, /readyz and the docs do not.
BEARER_SECURITY: list[dict[str, list[str]]] = [{"BearerAuth": []}]

_DESCRIPTIONS = {
    400: "`invalid_json`: the request body is not valid JSON (`bad_request` otherwise).",
    401: "`unauthorized`: the API key is missing, invalid or revoked (see WWW-Authenticate).",
    403: "`insufficient_scope`: the key lacks the scope this endpoint needs.",
    404: "`customer_not_found` (or another `*_not_found`): unknown or another merchant's object.",
    409: "`idempotency_request_in_progress` or another conflict (e.g. `customer_email_taken`).",
    413: "`payload_too_large`: the body exceeds the size limit.",
    415: "`unsupported_media_type`: the body is not of the media type this endpoint takes.",
    422: (
        "`validation_error` (details name each field and why), `idempotency_key_reused`, "
        "or a business rule such as `insufficient_points`."
    ),
    429: "`rate_limited`: too many requests for this key; see Retry-After.",
}


def error_responses(*status_codes: int, container: Any = ErrorEnvelope) -> dict[int, ResponseSpec]:
    """The errors a route can answer, in its surface's shape (``container``)."""
    # 400 is always listed so that our error shape replaces the framework's default;
    # every key has a rate limit (429).
    codes = sorted({400, 401, 403, 429, *status_codes})
    return {
        code: ResponseSpec(
            data_container=container, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }
