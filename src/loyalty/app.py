"""The ASGI application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.static_files import create_static_files_router

import loyalty
from loyalty.admin.mount import (
    admin_headers_middleware,
    admin_router,
    start_admin,
    with_admin_pages,
)
from loyalty.compat.surfaces import SURFACES
from loyalty.db.engine import Database
from loyalty.gc_tuning import tune_for_serving
from loyalty.http import fastpath as fast_path
from loyalty.http.auth import PUBLIC_OPT_KEY, BearerAuthMiddleware, require_scope
from loyalty.http.dependencies import DEPENDENCIES
from loyalty.http.errors import EXCEPTION_HANDLERS
from loyalty.http.health import healthz, readyz
from loyalty.http.metrics import install as install_metrics
from loyalty.http.metrics import metrics_endpoint
from loyalty.http.observability import request_id_middleware
from loyalty.http.options import options_middleware
from loyalty.http.ratelimit import RateLimiter, rate_limit_middleware
from loyalty.http.surface import longest_prefix_first
from loyalty.jobs import Scheduler, scheduler_enabled
from loyalty.ledger.writer import LedgerWriter
from loyalty.logs import configure_logging
from loyalty.settings import Settings

STATIC_DIRECTORY = Path(__file__).parent / "static"
# Swagger UI is vendored (no CDN) so the docs work on a machine without internet.
SWAGGER_ASSETS = "/static/swagger-ui"


@get(
    "/openapi.json",
    opt={PUBLIC_OPT_KEY: True},
    include_in_schema=False,
    media_type="application/vnd.oai.openapi+json",
)
async def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI document at the root (also served at /docs/openapi.json)."""
    return request.app.openapi_schema.to_schema()


async def start_services(app: Litestar, settings: Settings, database: Database) -> None:
    """Open the database's driver connections and start the ledger writer."""
    await database.start()
    writer = LedgerWriter(
        database,
        batch_size_max=settings.ledger_batch_size_max,
        batch_wait_ms_max=settings.ledger_batch_wait_ms_max,
        batches_in_flight_max=settings.ledger_batches_in_flight_max,
    )
    await writer.start()
    await start_admin(app, database, settings)
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings)
    app.state.database = database
    app.state.ledger_writer = writer
    app.state.scheduler = None
    app.state.deliverer = None
    if scheduler_enabled(settings, database):
        from loyalty.webhooks.delivery import Deliverer

        app.state.scheduler = Scheduler(
            database, settings, writer, settings.scheduler_interval_seconds
        )
        app.state.scheduler.start()
        # Whoever runs the jobs in-process delivers webhooks too.
        app.state.deliverer = Deliverer(database, settings)
        app.state.deliverer.start()


async def stop_services(app: Litestar, *, dispose_database: bool) -> None:
    """Finish queued movements, then close the database if this app opened it."""
    if app.state.scheduler is not None:
        await app.state.scheduler.stop()
    await app.state.ledger_writer.stop()
    if app.state.deliverer is not None:
        await app.state.deliverer.stop()
    if dispose_database:
        await app.state.database.dispose()


def create_app(settings: Settings | None = None, database: Database | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    owns_database = database is None

    async def on_startup(app: Litestar) -> None:
        await start_services(app, settings, database or Database(settings))
        if settings.gc_tuning:
            tune_for_serving()

    async def on_shutdown(app: Litestar) -> None:
        await stop_services(app, dispose_database=owns_database)

    openapi = OpenAPIConfig(
        title="Loyalty API",
        version=loyalty.__version__,
        description=(
            "Points ledger, customers and rewards. Errors always answer "
            '`{"error": {"code", "message", "details"}}`.'
        ),
        path="/docs",
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
            )
        ],
        components=Components(
            security_schemes={
                name: scheme
                for surface in SURFACES
                for name, scheme in surface.security_schemes.items()
            }
        ),
    )
    auth = DefineMiddleware(
        BearerAuthMiddleware,
        exclude_from_auth_key=PUBLIC_OPT_KEY,
        # The admin signs its staff in with its own session cookie (loyalty.admin).
        exclude=["^/docs", "^/admin(/|$)"],
    )
    application = Litestar(
        route_handlers=[
            *(controller for surface in SURFACES for controller in surface.controllers),
            healthz,
            readyz,
            metrics_endpoint,
            openapi_json,
            admin_router(),
            create_static_files_router(
                path="/static",
                directories=[STATIC_DIRECTORY],
                opt={PUBLIC_OPT_KEY: True},
                include_in_schema=False,
            ),
        ],
        middleware=[
            admin_headers_middleware,
            options_middleware,
            auth,
            rate_limit_middleware,
        ],
        guards=[require_scope],
        dependencies=DEPENDENCIES,
        # Authentication, errors and rate limits serve each request as its surface.
        state=State({"surfaces": longest_prefix_first(SURFACES)}),
        # Under /admin errors are HTML pages; elsewhere the surface's JSON.
        exception_handlers=with_admin_pages(EXCEPTION_HANDLERS),
        openapi_config=openapi,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        request_max_body_size=settings.request_body_bytes_max,
        debug=False,
    )
    # The hottest endpoints skip Litestar's per-request machinery (loyalty.http.fastpath).
    if settings.fast_path:
        application.asgi_handler = fast_path.install(application, application.asgi_handler)
    # Every request gets an id and an access-log line, and is counted, outside the
    # router and the fast path (unmatched paths too): loyalty.http.metrics.
    application.asgi_handler = request_id_middleware(application.asgi_handler)
    return install_metrics(application, settings)
