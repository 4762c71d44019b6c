"""Authentication middleware (the API key as each surface sends it) and the scope guard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from loyalty.actors import set_actor
from loyalty.auth import service as auth_service
from loyalty.auth.schemas import Principal
from loyalty.db.engine import Database
from loyalty.errors import InsufficientScopeError, UnauthorizedError
from loyalty.http.surface import Surface, app_surface

PUBLIC_OPT_KEY = "public"


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """The API key, as the request's surface sends it (Bearer on the native API)."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        surface = app_surface(connection.app, connection.scope["path"])
        database: Database = connection.app.state.database
        principal, token = await authenticate(
            surface, database, connection.headers, connection.query_params
        )
        return AuthenticationResult(user=principal, auth=token)


async def authenticate(
    surface: Surface, database: Database, headers: Mapping[str, str], query: Mapping[str, Any]
) -> tuple[Principal, str]:
    """The request's key, as ``surface`` sends it, resolved to its principal (or
    ``UnauthorizedError``); the request's writes are then the key's doing."""
    given = surface.credentials(headers, query)
    principal = await auth_service.authenticate(database, given.token)
    if given.merchant_id is not None and given.merchant_id != principal.merchant_id:
        raise UnauthorizedError("This API key does not belong to the account in 'x-guid'.")
    # What this request writes is the key's doing (the audit trail).
    set_actor(principal.actor)
    return principal, given.token


async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    """Guard: the key must hold the scope the route declares in ``opt["scope"]``.

    Async on purpose: Litestar runs synchronous guards in a thread pool, a
    thread hop on every request."""
    if route_handler.opt.get("scope") is not None:
        check_scopes(connection.user, route_handler.opt)


def check_scopes(principal: object, opt: Mapping[str, Any]) -> None:
    """The key must hold the scope a route declares in ``opt["scope"]`` (and any
    others it lists in ``opt["also_scopes"]``)."""
    scope = opt.get("scope")
    if scope is None:
        return
    if not isinstance(principal, Principal):
        raise UnauthorizedError("Send your API key as 'Authorization: Bearer <key>'.")
    for needed in (scope, *opt.get("also_scopes", ())):
        if needed not in principal.scopes:
            raise InsufficientScopeError(
                f"This API key lacks the '{needed}' scope this endpoint needs.",
                {"required_scope": needed},
            )


def current_principal(request: Any) -> Principal:
    principal = request.user
    if not isinstance(principal, Principal):
        raise UnauthorizedError("Send your API key as 'Authorization: Bearer <key>'.")
    return principal
