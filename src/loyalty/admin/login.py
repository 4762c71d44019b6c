"""Signing in and out: ``/admin/login`` and ``/admin/logout``.

The sign-in form has no session to derive a CSRF token from, so it carries a
double submit: ``GET /admin/login`` sets the short-lived cookie
``loyalty_admin_login`` with a random value and puts HMAC(key, "login:" +
value) in the form's ``_csrf`` (checked by the router's guard).

When the email and password are right for users of several merchants, the
form comes back with a choice of merchant (``merchant_id``) and asks for the
password again (it is never written into the page).
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Response, get, post, route
from litestar.datastructures import Cookie
from litestar.enums import HttpMethod
from litestar.params import FromPath
from litestar.response import Redirect

from loyalty.admin import security, service
from loyalty.admin.service import ChooseMerchant, Refused
from loyalty.admin.web import (
    LOGIN_COOKIE,
    LOGIN_COOKIE_SECONDS,
    PUBLIC,
    SESSION_COOKIE,
    SUPPORT_TOO,
    AdminRequest,
    Form,
    database,
    form_values,
    home_path,
    parse_uuid,
    render,
    secret_key,
    signed_in,
)
from loyalty.errors import NotFoundError


def _secure(request: AdminRequest) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: AdminRequest,
    form: Form,
    *,
    status_code: int = 200,
    merchants: list[tuple[Any, str]] | None = None,
) -> Response[str]:
    """The form, with a fresh double-submit value unless the browser has one already."""
    value = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    cookie = Cookie(
        key=LOGIN_COOKIE,
        value=value,
        path="/admin",
        max_age=LOGIN_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return render(
        request,
        "login.html",
        status_code=status_code,
        cookies=[cookie],
        form=form,
        merchants=merchants or [],
        csrf_token=security.login_csrf_token(secret_key(request), value),
    )


@get("/login", opt=PUBLIC)
async def login_page(request: AdminRequest) -> Response[str]:
    return _login_page(request, Form())


@post("/login", opt=PUBLIC)
async def login(request: AdminRequest) -> Response[Any]:
    values = await form_values(request)
    email = values.get("email", "")
    chosen = parse_uuid(values.get("merchant_id")) if values.get("merchant_id") else None
    result = await service.sign_in(
        database(request),
        email,
        values.get("password", ""),
        merchant_id=chosen,
        replacing=security.parse_session_cookie(request.cookies.get(SESSION_COOKIE)),
    )
    kept = {"email": email}
    if isinstance(result, Refused):
        status_code = 429 if result.locked else 401
        return _login_page(request, Form(kept, message=result.message), status_code=status_code)
    if isinstance(result, ChooseMerchant):
        message = "This account exists in several shops: choose one and type the password again."
        return _login_page(request, Form(kept, message=message), merchants=list(result.merchants))
    response: Response[Any] = Redirect(path=home_path(result.role), status_code=303)
    response.set_cookie(
        key=SESSION_COOKIE,
        value=security.session_cookie_value(result.merchant_id, result.token),
        path="/admin",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/admin")
    return response


@post("/logout", opt=SUPPORT_TOO)
async def logout(request: AdminRequest) -> Response[Any]:
    staff = signed_in(request)
    if staff is not None:
        await service.close_session(database(request), staff.merchant_id, staff.token_hash)
    response: Response[Any] = Redirect(path="/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@route(
    "/{rest:path}",
    http_method=[
        HttpMethod.GET,
        HttpMethod.POST,
        HttpMethod.PUT,
        HttpMethod.PATCH,
        HttpMethod.DELETE,
    ],
    opt=SUPPORT_TOO,
)
async def not_found(rest: FromPath[str]) -> None:
    """Any other address under /admin: the 404 page, after the session check (so
    the navigation shows, and nobody signed out learns which addresses exist)."""
    raise NotFoundError(f"Nothing at /admin{rest}.")


ROUTES = [login_page, login, logout, not_found]
