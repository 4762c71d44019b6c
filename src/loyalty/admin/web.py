"""What every admin page uses: rendering, the signed-in user, guards, forms, redirects.

Adding a page
=============
Create a module in ``loyalty/admin/pages/`` (e.g. ``rewards.py``) that ends with
``ROUTES = [handler, ...]``; ``loyalty.admin.mount`` registers every module of
that package under ``/admin`` (so ``@get("/rewards")`` serves ``/admin/rewards``).
Put its templates in ``loyalty/admin/templates/<page>/``: they extend
``base.html`` and import the form macros (``field``, ``textarea``, ``select``,
``checkbox``, ``csrf_field``, ``form_message``) with
``{% from "macros.html" import field, csrf_field, form_message with context %}``::

    from loyalty.admin.web import (
        AdminRequest, Form, SUPPORT_TOO, current_user, form_from_error, form_values,
        redirect, render,
    )

    @get("/rewards")
    async def rewards_page(request: AdminRequest) -> Response[str]:
        staff = current_user(request)            # merchant_id, user_id, email, role
        async with database(request).read() as connection:
            rewards = await rewards_service.list_rewards(connection, staff.merchant_id)
        return render(request, "rewards/list.html", rewards=rewards, form=Form())

    @post("/rewards")
    async def add_reward(request: AdminRequest) -> Response[str]:
        values = await form_values(request)
        try:
            await database(request).transaction(...)   # the API's services
        except LoyaltyError as error:
            form = form_from_error(error, values, fields=("name", "points_cost"))
            return render(request, "rewards/list.html", status_code=422, form=form, ...)
        return redirect(request, "/admin/rewards", notice="Reward added.")

    ROUTES = [rewards_page, add_reward]

What the router does for every route before the handler runs
(``admin_session_guard``):

- finds the session (cookie ``loyalty_admin``); none or expired → a 303 to
  ``/admin/login`` (``HX-Redirect`` for htmx requests);
- sets the audit trail's actor to ``user:<email>`` (``set_actor``);
- POST/PUT/PATCH/DELETE: checks the CSRF token (form field ``_csrf``, from the
  ``csrf_field()`` macro, or header ``X-CSRF-Token``, which ``base.html`` makes
  htmx send); refused → the 403 page, the handler never runs;
- roles: routes are for ``admin`` only unless they pass ``opt=SUPPORT_TOO``
  (support → the 403 page). ``guards=[admin_only]`` says "admin only" explicitly.

Errors: raise ``NotFoundError`` (another merchant's object too) for the 404
page, ``AdminError(403, ...)`` or any ``LoyaltyError`` for an error page in
words; anything unexpected is the 500 page (logged). Form errors go next to
their fields instead: ``form_from_error`` turns a ``LoyaltyError`` into a
``Form`` (values as typed, errors by field, a message for the whole form).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect

from loyalty.actors import set_actor, user_actor
from loyalty.admin import security, service
from loyalty.admin.service import Staff
from loyalty.db.engine import Database
from loyalty.decoding import validation_error
from loyalty.errors import LoyaltyError, ValidationFailedError

AdminRequest = Request[Any, Any, Any]
StructT = TypeVar("StructT", bound=msgspec.Struct)

PREFIX = "/admin"
SESSION_COOKIE = "loyalty_admin"
LOGIN_COOKIE = "loyalty_admin_login"
LOGIN_COOKIE_SECONDS = 2 * 60 * 60
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Route options (``opt=``): a route anyone may open (sign-in), a route support may use.
PUBLIC: dict[str, Any] = {"admin_public": True}
SUPPORT_TOO: dict[str, Any] = {"admin_roles": ("admin", "support")}
ROLES_OPT_KEY = "admin_roles"

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(moment: datetime | None) -> str:
    """A moment as pages show it: ``2026-12-02 08:00 UTC``."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


TEMPLATES.filters["when"] = when


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    path: str
    roles: tuple[str, ...] = ("admin",)


NAVIGATION = (
    NavItem("Dashboard", "/admin/"),
    NavItem("Customers", "/admin/customers", ("admin", "support")),
    NavItem("Rewards", "/admin/rewards"),
    NavItem("Earn rules", "/admin/earn-rules"),
    NavItem("Tiers", "/admin/tiers"),
    NavItem("Settings", "/admin/settings"),
    NavItem("API keys", "/admin/api-keys"),
    NavItem("Webhooks", "/admin/webhooks"),
    NavItem("Import & export", "/admin/data"),
    NavItem("Users", "/admin/users"),
)


def home_path(role: str) -> str:
    """Where a user lands after signing in."""
    return "/admin/" if role == "admin" else "/admin/customers"


def is_admin_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


# --- errors -----------------------------------------------------------------------


class AdminError(Exception):
    """An error page: its status, a title and what to do, in words."""

    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


class SignInRequired(Exception):
    """No valid session: the sign-in page."""


def forbidden(message: str = "Your role does not give access to this page.") -> AdminError:
    return AdminError(403, "Not allowed", message)


# --- the request's staff member, state ---------------------------------------------


def database(request: ASGIConnection[Any, Any, Any, Any]) -> Database:
    return cast("Database", request.app.state.database)


def secret_key(request: ASGIConnection[Any, Any, Any, Any]) -> bytes:
    return cast("bytes", request.app.state.admin_secret_key)


def signed_in(request: ASGIConnection[Any, Any, Any, Any]) -> Staff | None:
    """The signed-in staff member, or None (the sign-in page, error pages)."""
    staff = request.state.get("admin_staff")
    return staff if isinstance(staff, Staff) else None


def current_user(request: ASGIConnection[Any, Any, Any, Any]) -> Staff:
    """The signed-in staff member: ``merchant_id``, ``user_id``, ``email``, ``role``."""
    staff = signed_in(request)
    if staff is None:
        raise SignInRequired
    return staff


def csrf_token(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    return security.csrf_token(secret_key(request), current_user(request).token_hash)


# --- guards -----------------------------------------------------------------------


async def _given_csrf(request: AdminRequest) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


def _csrf_refused() -> AdminError:
    return AdminError(
        403,
        "This form has expired",
        "The request did not carry a valid security token, so nothing was changed. "
        "Go back, reload the page and try again.",
    )


async def admin_session_guard(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    """Every admin route: the session, the actor, the CSRF token, the role."""
    request = cast("AdminRequest", connection)
    staff = None
    parsed = security.parse_session_cookie(request.cookies.get(SESSION_COOKIE))
    if parsed is not None:
        staff = await service.resolve_session(database(request), *parsed)
    if staff is not None:
        request.state.admin_staff = staff
        set_actor(user_actor(staff.email))
    unsafe = request.method not in SAFE_METHODS
    if route_handler.opt.get("admin_public"):
        if unsafe:
            cookie = request.cookies.get(LOGIN_COOKIE) or ""
            expected = security.login_csrf_token(secret_key(request), cookie)
            if not cookie or not security.same(await _given_csrf(request), expected):
                raise _csrf_refused()
        return
    if staff is None:
        raise SignInRequired
    if unsafe and not security.same(await _given_csrf(request), csrf_token(request)):
        raise _csrf_refused()
    if staff.role not in route_handler.opt.get(ROLES_OPT_KEY, ("admin",)):
        raise forbidden()


async def admin_only(
    connection: ASGIConnection[Any, Any, Any, Any], _route_handler: BaseRouteHandler
) -> None:
    """Guard: the signed-in user must be an ``admin`` (support → the 403 page)."""
    if current_user(connection).role != "admin":
        raise forbidden()


# --- forms ------------------------------------------------------------------------


@dataclass
class Form:
    """A form's values as typed, its errors by field and a message about the whole."""

    values: Mapping[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None

    def value(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def error(self, name: str) -> str | None:
        return self.errors.get(name)

    @property
    def failed(self) -> bool:
        return bool(self.errors) or self.message is not None


async def form_values(request: AdminRequest) -> dict[str, str]:
    """The submitted form's fields (the first value of each), without the CSRF token."""
    form = await request.form()
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if name != CSRF_FIELD and isinstance(value, str) and name not in values:
            values[name] = value
    return values


def sentence(text: str) -> str:
    """``must be positive`` → ``Must be positive.``"""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def form_from_error(
    error: LoyaltyError,
    values: Mapping[str, str],
    *,
    fields: Iterable[str] = (),
    codes: Mapping[str, str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Form:
    """The form to show again after ``error``: each problem next to its field.

    ``fields``: the form's input names (a validation detail about one of them
    is shown next to it; others go in the form's message). ``aliases``: the
    service's field name → the input's name where they differ. ``codes``: an
    error code → the input it is about (``{"user_email_taken": "email"}``);
    any other error is a message about the whole form, in the service's words."""
    names = set(fields)
    aliases = aliases or {}
    form = Form(values=values)
    if isinstance(error, ValidationFailedError) and isinstance(error.details, list):
        others: list[str] = []
        for detail in error.details:
            if not isinstance(detail, dict):
                continue
            name = str(detail.get("field") or "")
            name = aliases.get(name, name)
            message = sentence(str(detail.get("message") or "is invalid"))
            if name in names:
                form.errors.setdefault(name, message)
            else:
                label = name.replace("_", " ").capitalize() or "The form"
                others.append(f"{label}: {message}")
        if others or not form.errors:
            form.message = " ".join(others) or sentence(error.message)
        return form
    about = (codes or {}).get(error.code)
    if about is not None:
        form.errors[about] = sentence(error.message)
    else:
        form.message = sentence(error.message)
    return form


# --- rendering ----------------------------------------------------------------------


def _notice(request: AdminRequest) -> str | None:
    text = request.query_params.get("notice")
    signature = request.query_params.get("signature")
    if not text or not signature:
        return None
    return text if security.same(signature, _notice_signature(request, text)) else None


def _notice_signature(request: ASGIConnection[Any, Any, Any, Any], text: str) -> str:
    return security.sign(secret_key(request), "notice", text)[:32]


def navigation(request: AdminRequest, staff: Staff | None) -> list[dict[str, Any]]:
    if staff is None:
        return []
    path = request.url.path
    return [
        {
            "label": item.label,
            "path": item.path,
            "current": path.rstrip("/") == item.path.rstrip("/")
            or (item.path != "/admin/" and path.startswith(item.path + "/")),
        }
        for item in NAVIGATION
        if staff.role in item.roles
    ]


def render_text(request: AdminRequest, template: str, **context: Any) -> str:
    """The template rendered with the page's context (the user, CSRF token, nav)."""
    staff = signed_in(request)
    if staff is not None:
        context.setdefault("csrf_token", csrf_token(request))
    context.setdefault("csrf_token", "")
    context.setdefault("notice", _notice(request))
    context.setdefault("form", Form())
    context.setdefault("alert", None)
    return TEMPLATES.get_template(template).render(
        staff=staff,
        merchant_name=staff.merchant_name if staff else None,
        nav=navigation(request, staff),
        home=home_path(staff.role) if staff else "/admin/login",
        hx_headers=json.dumps({CSRF_HEADER: context["csrf_token"]}),
        **context,
    )


def render(
    request: AdminRequest,
    template: str,
    *,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    """An HTML page (or fragment, for htmx) from ``template`` and ``context``."""
    return Response(
        content=render_text(request, template, **context),
        status_code=status_code,
        media_type=MediaType.HTML,
        cookies=cookies,
    )


def is_htmx(request: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return request.headers.get("HX-Request") == "true"


def redirect(request: AdminRequest, path: str, *, notice: str | None = None) -> Response[Any]:
    """After a change: a 303 to ``path`` (``HX-Redirect`` for htmx), with a notice
    the next page shows (signed, so nobody can make the page say something else)."""
    if notice is not None:
        query = urlencode({"notice": notice, "signature": _notice_signature(request, notice)})
        path = f"{path}{'&' if '?' in path else '?'}{query}"
    if is_htmx(request):
        return Response(
            content="", status_code=200, media_type=MediaType.TEXT, headers={"HX-Redirect": path}
        )
    return Redirect(path=path, status_code=303)


def parse_uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text or "")
    except ValueError:
        return None


# --- forms → the API's request structs ---------------------------------------------

_BOUND = re.compile(r"^Expected `[^`]+` (?P<op>>=|<=|>|<) (?P<bound>-?[\d.e+-]+)$")
_LENGTH = re.compile(r"^Expected `[^`]+` of length (?P<op>>=|<=) (?P<bound>\d+)$")
_GOT = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")
_BOUND_WORDS = {
    ">=": "must be at least",
    ">": "must be more than",
    "<=": "must be at most",
    "<": "must be less than",
}


def _bound(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def in_words(message: str) -> str:
    """A msgspec validation message in words: ``Expected `int` >= 1`` → ``must be at
    least 1``; one it does not know is returned as it is."""
    if match := _LENGTH.match(message):
        bound = int(match["bound"])
        if match["op"] == "<=":
            return f"must be at most {bound} characters"
        return "is required" if bound == 1 else f"must be at least {bound} characters"
    if match := _BOUND.match(message):
        return f"{_BOUND_WORDS[match['op']]} {_bound(match['bound'])}"
    if match := _GOT.match(message):
        expected, got = match["expected"].replace(" | null", ""), match["got"]
        if got == "null":
            return "is required"
        if expected == "int" and got == "float":
            return "must be a whole number"
        if expected in {"int", "float"}:
            return "must be a number"
        if expected == "bool":
            return "must be yes or no"
        return "is not valid here"
    if message.startswith("Invalid enum value"):
        return "is not one of the choices"
    if message.startswith("Object missing required field"):
        return "is required"
    return message


_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")


def form_text(values: Mapping[str, str], name: str) -> str | None:
    """A text field as typed, trimmed; empty → None."""
    text = values.get(name, "").strip()
    return text or None


def form_number(values: Mapping[str, str], name: str) -> int | float | str | None:
    """A number field: empty → None, ``12`` → 12, ``12.5`` → 12.5. Anything else is
    returned as typed, for ``decode_form`` to refuse in words (``must be a number``)."""
    text = values.get(name, "").strip().replace(" ", "")
    if not text:
        return None
    if not _NUMBER.match(text):
        return text
    return float(text) if "." in text else int(text)


@functools.cache
def _field_checker(model: type[msgspec.Struct], name: str) -> type[msgspec.Struct]:
    """A struct of ``model``'s field ``name`` alone (its type and constraints)."""
    (info,) = (info for info in msgspec.structs.fields(model) if info.encode_name == name)
    return msgspec.defstruct(f"{model.__name__}_{name}", [(name, info.type)])


def _in_words(error: msgspec.ValidationError) -> dict[str, Any]:
    detail: dict[str, Any] = validation_error(error).details[0]
    return {**detail, "message": in_words(str(detail.get("message", "")))}


def decode_form(data: Mapping[str, Any], model: type[StructT]) -> StructT:
    """The API's request struct ``model`` (a msgspec struct) from a form's fields,
    already converted (numbers, booleans; a field left out is unset), checked as
    the API checks a body (``Meta`` bounds, lengths, choices, required fields).

    Every field's problem is a detail of one ``ValidationFailedError``, in words
    (``must be at least 1``), naming the field: give it to ``form_from_error``."""
    try:
        return msgspec.convert(data, type=model, strict=True)
    except msgspec.ValidationError as error:
        first = _in_words(error)
    known = {info.encode_name: info for info in msgspec.structs.fields(model)}
    details: list[dict[str, Any]] = []
    for name, info in known.items():
        if name not in data:
            if info.required:
                details.append({"field": name, "location": "body", "message": "is required"})
            continue
        try:
            msgspec.convert({name: data[name]}, type=_field_checker(model, name), strict=True)
        except msgspec.ValidationError as field_error:
            details.append(_in_words(field_error))
    if not details:  # not about one field alone (an unknown field, say)
        details.append(first)
    head = details[0]
    raise ValidationFailedError(f"Invalid {head['field']}: {head['message']}", details)


def worded(error: LoyaltyError) -> LoyaltyError:
    """``error`` with its validation details in words (a service that decodes JSON
    with msgspec, such as a reward's rule, reports ``Expected `float`, got `str```):
    give the result to ``form_from_error``."""
    if not isinstance(error, ValidationFailedError) or not isinstance(error.details, list):
        return error
    details = [
        {**detail, "message": in_words(str(detail.get("message", "")))}
        if isinstance(detail, dict)
        else detail
        for detail in error.details
    ]
    return ValidationFailedError(error.message, details)
