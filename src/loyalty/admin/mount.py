"""How the app serves the admin: its router, HTML error pages, headers, startup.

``create_app`` registers ``admin_router()``, wraps its exception handlers with
``with_admin_pages`` (under ``/admin`` errors are HTML pages, elsewhere the
API's JSON), adds ``admin_headers_middleware`` and calls ``start_admin`` when
the services start.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import structlog
from jinja2 import TemplateError
from litestar import Litestar, Request, Response, Router
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import MediaType, ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect
from litestar.types import ASGIApp, ExceptionHandlersMap, Message, Receive, Scope, Send

from loyalty.admin import login, pages
from loyalty.admin.security import load_secret_key
from loyalty.admin.web import (
    SESSION_COOKIE,
    AdminError,
    SignInRequired,
    admin_session_guard,
    is_admin_path,
    is_htmx,
    render,
)
from loyalty.db.engine import Database, is_unavailable
from loyalty.errors import LoyaltyError
from loyalty.settings import Settings

log = structlog.get_logger("loyalty.admin")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
)


async def start_admin(app: Litestar, database: Database, settings: Settings) -> None:
    """Read (or generate, once per instance) the signing key."""
    app.state.admin_secret_key = await load_secret_key(database, settings)


def page_routes() -> list[HTTPRouteHandler]:
    """The ``ROUTES`` of every module of ``loyalty.admin.pages``."""
    handlers: list[HTTPRouteHandler] = []
    for module_info in sorted(pkgutil.iter_modules(pages.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pages.__name__}.{module_info.name}")
        routes = getattr(module, "ROUTES", None)
        if routes is None:
            raise RuntimeError(f"{module.__name__} has no ROUTES list")
        handlers.extend(routes)
    return handlers


def admin_router() -> Router:
    return Router(
        path="/admin",
        route_handlers=[*login.ROUTES, *page_routes()],
        guards=[admin_session_guard],
        include_in_schema=False,
    )


def admin_headers_middleware(app: ASGIApp) -> ASGIApp:
    """The security headers on every response under /admin (pages, errors, redirects)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not is_admin_path(scope["path"]):
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS:
                    headers[name] = value
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


# --- error pages --------------------------------------------------------------------

AnyRequest = Request[Any, Any, Any]

_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too large",
    422: "Cannot do that",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def error_page(request: AnyRequest, status_code: int, title: str, message: str) -> Response[str]:
    return render(request, "error.html", status_code=status_code, title=title, message=message)


def _sign_in(request: AnyRequest) -> Response[Any]:
    if is_htmx(request):
        return Response(
            content="",
            status_code=200,
            media_type=MediaType.TEXT,
            headers={"HX-Redirect": "/admin/login"},
        )
    return Redirect(path="/admin/login", status_code=303)


def admin_error(request: AnyRequest, error: Exception) -> Response[Any]:
    """An error under /admin as an HTML page (never a stack trace or JSON)."""
    if isinstance(error, SignInRequired):
        return _sign_in(request)
    if isinstance(error, AdminError):
        return error_page(request, error.status_code, error.title, error.message)
    if isinstance(error, LoyaltyError):
        if error.status_code == 404:
            return not_found(request)
        title = _TITLES.get(error.status_code, "Cannot do that")
        return error_page(request, error.status_code, title, error.message)
    if isinstance(error, ValidationException):
        return error_page(
            request, 400, "Bad request", "The request was not filled in as this page expects."
        )
    if isinstance(error, HTTPException) and error.status_code < 500:
        if error.status_code == 404:
            # No route matched (the session was not checked): someone without a
            # session cookie is sent to sign in, learning nothing about addresses.
            if SESSION_COOKIE not in request.cookies:
                return _sign_in(request)
            return not_found(request)
        title = _TITLES.get(error.status_code, "Cannot do that")
        return error_page(request, error.status_code, title, str(error.detail))
    # (A missing template is an IOError too, but no outage: it is the 500 page.)
    if not isinstance(error, TemplateError) and (
        is_unavailable(error) or is_unavailable(error.__cause__ or error)
    ):
        log.warning("database_unavailable", path=request.url.path, error=str(error))
        response = error_page(
            request, 503, _TITLES[503], "The database cannot be reached; try again in a moment."
        )
        response.headers["Retry-After"] = "1"
        return response
    log.exception("admin_unhandled_error", path=request.url.path, method=request.method)
    return error_page(
        request,
        500,
        _TITLES[500],
        "An unexpected error occurred; it has been logged. Try again, or go back.",
    )


def not_found(request: AnyRequest) -> Response[str]:
    return error_page(
        request,
        404,
        _TITLES[404],
        "Nothing is here: the address is wrong or out of date.",
    )


Handler = Callable[[AnyRequest, Any], Response[Any]]


def with_admin_pages(handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """The app's exception handlers, answering with HTML pages under /admin."""

    def admin_aware(original: Handler) -> Handler:
        def handle(request: AnyRequest, error: Any) -> Response[Any]:
            if is_admin_path(request.url.path):
                return admin_error(request, error)
            return original(request, error)

        return handle

    fallback = handlers.get(Exception)
    wrapped: dict[Any, Any] = {key: admin_aware(handler) for key, handler in handlers.items()}
    for key in (AdminError, SignInRequired, Exception):
        if key not in handlers:
            wrapped[key] = admin_aware(fallback or _reraise)
    return wrapped


def _reraise(_request: AnyRequest, error: Any) -> Response[Any]:
    raise error
