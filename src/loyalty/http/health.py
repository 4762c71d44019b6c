from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from loyalty.db.engine import Database
from loyalty.http.auth import PUBLIC_OPT_KEY


class Health(msgspec.Struct, frozen=True):
    status: str


@get("/healthz", opt={PUBLIC_OPT_KEY: True}, tags=["Operations"], summary="Liveness", security=[])
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    opt={PUBLIC_OPT_KEY: True},
    tags=["Operations"],
    summary="Readiness: 200 when the database answers, else 503",
)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    database: Database = request.app.state.database
    try:
        await database.ping()
    except Exception:
        return Response(Health(status="unavailable"), status_code=503)
    return Response(Health(status="ready"), status_code=200)
