"""``GET /metrics`` and the middleware that counts every request.

The middleware wraps the whole application (``install``), outside Litestar's
router, so it sees every request, unmatched paths (404) included, and labels
it with the route template the router chose (``scope["path_template"]``,
e.g. ``/api/v1/public/customers/rewards/{id}/use``), never the raw path; a
path no route matched is ``route="unmatched"``. Pure ASGI: a timer, the
status from ``http.response.start``, two series updated.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from loyalty import metrics
from loyalty.db.engine import Database
from loyalty.errors import UnauthorizedError
from loyalty.http.auth import PUBLIC_OPT_KEY
from loyalty.settings import Settings
from loyalty.webhooks import backlog


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    record = metrics.HTTP.record
    clock = time.perf_counter

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = clock()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            record(scope["method"], scope.get("path_template"), status, clock() - started)

    return middleware


def install(app: Litestar, settings: Settings) -> Litestar:
    """Count ``app``'s requests (unless ``LOYALTY_METRICS=off``)."""
    if settings.metrics:
        app.asgi_handler = metrics_middleware(app.asgi_handler)
    return app


@get(
    "/metrics",
    opt={PUBLIC_OPT_KEY: True},
    include_in_schema=False,
    media_type=metrics.CONTENT_TYPE,
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text format; ``Authorization: Bearer <LOYALTY_METRICS_TOKEN>``
    when that setting is set."""
    settings: Settings = request.app.state.settings
    if not metrics.token_allows(request.headers.get("authorization"), settings.metrics_token):
        raise UnauthorizedError("Send the metrics token as 'Authorization: Bearer <token>'.")
    database: Database = request.app.state.database
    await backlog.refresh(database)
    return Response(content=metrics.exposition(), media_type=metrics.CONTENT_TYPE)
