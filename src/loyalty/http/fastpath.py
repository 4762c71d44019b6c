"""A lean path for the hottest endpoints: a customer, its redeemable rewards, a
points movement.

The loyalty widget on every page of every shop reads a customer's points, and
shops post movements as orders come in; for these few requests Litestar's
per-request machinery (routing, the middleware stack, signature parsing,
dependency resolution, response objects) cost more CPU than the work itself.
A route opts in by naming a ``FastEndpoint`` in its handler's ``opt``
(``FAST_PATH_OPT_KEY``); the handler stays registered in Litestar, which
still documents it (OpenAPI) and serves every request the fast path does not
take. Both call the same function for the work (e.g.
``loyalty.customers.endpoints.read_customer``), so there is one
implementation of each endpoint.

What the fast path takes: the route's exact path and method, one
``customer_id`` or ``customer_email`` within the parameter's limits, and for a
body a ``Content-Length`` within the body limit and a body that decodes
strictly. Anything else (a trailing slash, a repeated parameter, a bad host
header, a body Litestar would refuse…) is handed to Litestar untouched (a body
already read is replayed), so every refusal before the request counts against
its key's rate limit is Litestar's own. From there the fast path does what the
middleware stack and guard do, in their order, with their code:
authentication (``loyalty.http.auth.authenticate``), the rate limit
(``RateLimiter.check``, its headers on every answer), the route's scopes
(``check_scopes``), then the endpoint; errors are rendered by
``loyalty.http.errors`` in the surface's shape. Request ids, the access log
and the metrics wrap both paths (``loyalty.app.create_app``).
``LOYALTY_FAST_PATH=off`` serves everything through Litestar;
``tests/integration/http/test_fast_path.py`` sends the same requests both
ways and compares the answers byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import EMAIL_PATTERN
from loyalty.db.engine import Database
from loyalty.decoding import decode_strict
from loyalty.errors import LoyaltyError
from loyalty.http.auth import authenticate, check_scopes
from loyalty.http.dependencies import (
    CUSTOMER_EMAIL_CHARS_MAX,
    CUSTOMER_ID_CHARS_MAX,
    Caller,
)
from loyalty.http.errors import ErrorReply, loyalty_error_reply, unexpected_reply
from loyalty.http.ratelimit import RateLimiter, encoded_headers, refusal
from loyalty.http.surface import Surface, app_surface
from loyalty.http.writes import REPLAYED_HEADER

FAST_PATH_OPT_KEY = "fast_path"

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    body: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class FastCall:
    """What an endpoint's fast function is given: the caller and the customer, and
    for a write the strictly decoded body and what idempotency needs."""

    caller: Caller
    customer_ref: CustomerRef
    data: Any
    idempotency_key: str | None
    method: str
    path: str
    query: str
    body: bytes


@dataclass(frozen=True, slots=True)
class FastEndpoint:
    run: Callable[[FastCall], Awaitable[Reply]]
    # The body's type, decoded strictly before the request is taken (None: no body).
    body: type | None = None


_encoder = msgspec.json.Encoder()
_REPLAYED = (REPLAYED_HEADER.lower().encode(), b"true")


def ok(value: Any) -> Reply:
    """200 with ``value`` as JSON."""
    return Reply(200, _encoder.encode(value), [])


def outcome_reply(status_code: int, body: bytes, replayed: bool) -> Reply:
    """A write's stored or fresh answer, marked when it is a replay."""
    return Reply(status_code, body, [_REPLAYED] if replayed else [])


@dataclass(frozen=True, slots=True)
class _Route:
    endpoint: FastEndpoint
    opt: Mapping[str, Any]
    template: str
    surface: Surface


# Hosts the fast path takes as they are (a subset of what Litestar accepts).
_PLAIN_HOST = re.compile(rb"[0-9A-Za-z.:\[\]-]*")
_EMAIL = re.compile(EMAIL_PATTERN)
_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")
# Request headers the fast path reads; one of them sent twice is left to Litestar.
_READ = frozenset(
    (b"authorization", b"host", b"content-length", b"transfer-encoding", b"idempotency-key")
)
_START_JSON = (b"content-type", b"application/json")


def _headers(scope: Scope) -> dict[str, str] | None:
    found: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.lower()
        if name in _READ:
            text = name.decode("latin-1")
            if text in found or (name == b"host" and not _PLAIN_HOST.fullmatch(raw_value)):
                return None
            found[text] = raw_value.decode("latin-1")
    return found


def _customer_query(raw: bytes) -> tuple[CustomerRef, dict[str, str]] | None:
    """The customer the query names, within the parameters' limits, and the query
    (first values); None when Litestar should judge it."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True, separator="&"):
        if name in query:
            if name in ("customer_id", "customer_email"):
                return None
            continue
        query[name] = value
    customer_id = query.get("customer_id")
    email = query.get("customer_email")
    if customer_id is not None and len(customer_id) > CUSTOMER_ID_CHARS_MAX:
        return None
    if email is not None and (len(email) > CUSTOMER_EMAIL_CHARS_MAX or not _EMAIL.search(email)):
        return None
    return CustomerRef(customer_id=customer_id, customer_email=email), query


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` giving ``body`` again first (the fast path read it, then handed on)."""
    pending = True

    async def replayed() -> Any:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _send(send: Send, status_code: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status_code,
            "headers": [_START_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _from_error(error: ErrorReply) -> Reply:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in error.headers.items()
    ]
    return Reply(error.status_code, error.body, headers)


def _failure(surface: Surface, error: Exception, path: str, method: str) -> Reply:
    """An exception's answer, as Litestar's handlers give it (``loyalty.http.errors``)."""
    if isinstance(error, LoyaltyError):
        return _from_error(loyalty_error_reply(surface, error, path))
    return _from_error(unexpected_reply(surface, error, path, method))


def _routes(app: Litestar) -> dict[tuple[str, str], _Route]:
    routes: dict[tuple[str, str], _Route] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            endpoint = handler.opt.get(FAST_PATH_OPT_KEY)
            if not isinstance(endpoint, FastEndpoint):
                continue
            for method in handler.http_methods:
                routes[(method, route.path)] = _Route(
                    endpoint, handler.opt, route.path_format, app_surface(app, route.path)
                )
    return routes


def install(app: Litestar, inner: ASGIApp) -> ASGIApp:
    """``inner`` (Litestar's handler) behind the fast path of ``app``'s opted-in routes."""
    routes = _routes(app)
    state = app.state

    async def fast_path(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await inner(scope, receive, send)
            return
        route = routes.get((scope["method"], scope["path"]))
        if route is None or scope.get("root_path"):
            await inner(scope, receive, send)
            return
        headers = _headers(scope)
        customer = None if headers is None else _customer_query(scope["query_string"])
        try:
            query = scope["query_string"].decode()
        except UnicodeDecodeError:
            customer = None
        if headers is None or customer is None:
            await inner(scope, receive, send)
            return
        ref, query_params = customer
        body = b""
        data: Any = None
        if route.endpoint.body is not None:
            length = headers.get("content-length", "")
            if (
                "transfer-encoding" in headers
                or not _CONTENT_LENGTH.fullmatch(length)
                or int(length) > state.settings.request_body_bytes_max
            ):
                await inner(scope, receive, send)
                return
            chunks: list[bytes] = []
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left; there is no one to answer
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = b"".join(chunks)
            try:
                data = decode_strict(body, route.endpoint.body)
            except LoyaltyError:
                await inner(scope, _replay(body, receive), send)
                return
        scope["path_template"] = route.template
        await _serve(route, scope, send, headers, ref, query_params, query, data, body)

    async def _serve(
        route: _Route,
        scope: HTTPScope,
        send: Send,
        headers: dict[str, str],
        ref: CustomerRef,
        query_params: dict[str, str],
        query: str,
        data: Any,
        body: bytes,
    ) -> None:
        path: str = scope["path"]
        surface = route.surface
        database: Database = state.database
        try:
            principal, _ = await authenticate(surface, database, headers, query_params)
        except Exception as error:  # a refused key, or its look-up failed (database down…)
            refused = _failure(surface, error, path, scope["method"])
            await _send(send, refused.status_code, refused.body, refused.headers)
            return
        limiter: RateLimiter = state.rate_limiter
        decision = await limiter.check(principal)
        if decision is not None and not decision.allowed:
            await refusal(send, app, decision, path)
            return
        limit_headers = [] if decision is None else encoded_headers(decision)
        try:
            check_scopes(principal, route.opt)
            call = FastCall(
                Caller(principal, database, state.ledger_writer),
                ref,
                data,
                headers.get("idempotency-key"),
                scope["method"],
                path,
                query,
                body,
            )
            reply = await route.endpoint.run(call)
        except Exception as error:
            reply = _failure(surface, error, path, scope["method"])
        await _send(send, reply.status_code, reply.body, [*reply.headers, *limit_headers])

    return fast_path
