"""OPTIONS answered with the right ``Allow`` header.

Litestar's automatic OPTIONS handler can keep the methods of the first
handler registered on a path (``Allow: OPTIONS, POST`` where GET is served
too), depending on registration order. This middleware answers OPTIONS from
the app's complete map of paths to methods instead.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)


def options_middleware(app: ASGIApp) -> ASGIApp:
    methods_by_path: dict[str, set[str]] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope.get("method") == "OPTIONS":
            if not methods_by_path:
                for route in scope["litestar_app"].routes:
                    methods_by_path.setdefault(route.path_format, set()).update(route.methods)
            template = scope.get("path_template") or scope["path"]
            methods = methods_by_path.get(template)
            if methods:
                allow = ", ".join(sorted({*methods, "OPTIONS"}))
                start: HTTPResponseStartEvent = {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", allow.encode())],
                }
                body: HTTPResponseBodyEvent = {
                    "type": "http.response.body",
                    "body": b"",
                    "more_body": False,
                }
                await send(start)
                await send(body)
                return
        await app(scope, receive, send)

    return middleware
