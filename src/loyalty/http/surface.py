"""What a surface of the API is: the native one or a vendor-compatible one.

A surface is chosen by path prefix. It decides how the API key is sent, the
shape and status of errors, the OpenAPI security schemes that document the
credentials, and the controllers that serve it, so that a merchant's existing
integration code gets the answers it was written for. Each surface is
declared once, as a ``Surface`` in its own module (``loyalty.compat.native``,
``loyalty.compat.yotpo``…); ``loyalty.compat.surfaces.SURFACES`` lists them,
the app registers their controllers and schemes and keeps the list in
``app.state.surfaces``, where authentication, error rendering and rate
limiting look up the surface of each request. Business rules never depend on
the surface.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Litestar
from litestar.openapi.spec import SecurityScheme

BEARER_CHALLENGE = 'Bearer realm="loyalty"'


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str
    # Yotpo names the merchant too (x-guid); the key must belong to it.
    merchant_id: uuid.UUID | None = None


def same_status(status_code: int, code: str) -> int:
    """The native mapping: every outcome keeps its status."""
    return status_code


def unprocessable_as_400(status_code: int, code: str) -> int:
    """Vendors whose validation and business failures are 400s (Appstle, Bonifiq)."""
    return 400 if status_code == 422 else status_code


@dataclass(frozen=True, slots=True)
class Surface:
    name: str
    # The paths it serves; the surface with the longest prefix of a path serves it,
    # so the native API's "/" takes every path no vendor claims.
    prefix: str
    # The API key as this surface sends it (headers, query parameters), or raises
    # UnauthorizedError in the surface's words.
    credentials: Callable[[Mapping[str, str], Mapping[str, Any]], Credentials]
    # An error's body: (status, code, message, details, path) → JSON bytes.
    error_body: Callable[[int, str, str, Any, str], bytes]
    # OpenAPI security schemes by name, as the surface's controllers require them.
    security_schemes: Mapping[str, SecurityScheme]
    controllers: tuple[type[Controller], ...]
    # The status this surface's clients expect for an outcome: (status, code) → status.
    status: Callable[[int, str], int] = same_status
    # WWW-Authenticate of every 401.
    challenge: str = BEARER_CHALLENGE
    # WWW-Authenticate of a 401 for a refused key (missing, unknown, revoked), when it
    # says more than ``challenge``.
    key_refused_challenge: str | None = None


def longest_prefix_first(surfaces: Sequence[Surface]) -> tuple[Surface, ...]:
    """The surfaces in the order ``path`` is matched against them (once, at start)."""
    return tuple(sorted(surfaces, key=lambda surface: -len(surface.prefix)))


def surface_for(surfaces: Sequence[Surface], path: str) -> Surface:
    """The surface that serves ``path``: the one with the longest prefix of it."""
    return _first_match(longest_prefix_first(surfaces), path)


def _first_match(ordered: tuple[Surface, ...], path: str) -> Surface:
    for surface in ordered:
        if path.startswith(surface.prefix):
            return surface
    raise LookupError(f"no surface serves {path!r}")


def app_surface(app: Litestar, path: str) -> Surface:
    """The surface of a request to ``app`` (whose state holds them, longest prefix first:
    this runs on every authenticated request)."""
    ordered: tuple[Surface, ...] = app.state.surfaces
    return _first_match(ordered, path)


def header(headers: Mapping[str, str], name: str) -> str:
    """A header's value, trimmed; empty when absent."""
    value = headers.get(name, "") or ""
    return value.strip()
