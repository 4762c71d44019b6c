"""Request ids and one access-log line per request.

The middleware wraps the whole application (``loyalty.app.create_app``), outside
Litestar's router and the fast path, so every response carries
``X-Request-ID`` (an unmatched path's 404 too) and every request is logged once,
whichever of the two served it.
"""

from __future__ import annotations

import os
import re
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.encode()
_SAFE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
log = structlog.get_logger("loyalty.access")


def _request_id(scope: Scope) -> bytes:
    """The caller's ``X-Request-ID`` when it is safe to echo and log, else a new one."""
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER_BYTES:
            if _SAFE_REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    return os.urandom(16).hex().encode()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    bind = structlog.contextvars.bind_contextvars
    unbind = structlog.contextvars.unbind_contextvars
    clock = time.perf_counter

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = _request_id(scope)
        started = clock()
        status_code = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() != _REQUEST_ID_HEADER_BYTES
                ]
                headers.append((_REQUEST_ID_HEADER_BYTES, request_id))
                message["headers"] = headers
            await send(message)

        bind(request_id=request_id.decode("latin-1"))
        try:
            await app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method", ""),
                path=scope["path"],
                status=status_code,
                duration_ms=round((clock() - started) * 1000, 2),
            )
            unbind("request_id")

    return middleware
