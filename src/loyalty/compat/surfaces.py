"""Every surface of the API: the native one and the vendor-compatible ones.

Each is declared once, as the ``SURFACE`` of its own module (see
``loyalty.http.surface``). The app registers their controllers and OpenAPI
security schemes in this order and hands the list to authentication, error
rendering and rate limiting, which serve each request as the surface of its
path.
"""

from __future__ import annotations

from loyalty.compat import appstle, bonifiq, native, yotpo
from loyalty.http.surface import Surface

SURFACES: tuple[Surface, ...] = (native.SURFACE, yotpo.SURFACE, bonifiq.SURFACE, appstle.SURFACE)
