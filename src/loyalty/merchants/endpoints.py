from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write
from loyalty.merchants import service
from loyalty.merchants.schemas import (
    ExpiryPreviewEnvelope,
    PreviewExpiry,
    ProgramSettingsEnvelope,
    UpdateProgramSettings,
)


class ProgramSettingsController(Controller):
    """The merchant's programme settings."""

    path = "/api/v1/settings/program"
    security = BEARER_SECURITY
    tags = ["Settings"]

    @get(
        "/",
        opt={"scope": "settings:read"},
        summary="Programme settings",
        responses=error_responses(),
    )
    async def get_settings(self, caller: CurrentCaller) -> ProgramSettingsEnvelope:
        async with caller.database.read() as connection:
            settings = await service.get_program_settings(connection, caller.merchant_id)
        return ProgramSettingsEnvelope(data=settings)

    @patch(
        "/",
        opt={"scope": "settings:write"},
        summary="Change programme settings",
        description="Only the fields sent change. New values apply from now on.",
        responses=error_responses(422),
    )
    async def update_settings(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[UpdateProgramSettings],
    ) -> Response[ProgramSettingsEnvelope]:
        data = await strict_body(request, UpdateProgramSettings)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            settings = await service.update_program_settings(connection, caller.merchant_id, data)
            return 200, ProgramSettingsEnvelope(data=settings)

        return await idempotent_write(request, caller.principal, operation)

    @post(
        "/preview",
        opt={"scope": "settings:read"},
        status_code=200,
        summary="Preview an expiry policy change",
        description=(
            "How many customers and points a proposed `expiry_policy` / `expiry_days` would "
            "affect, computed now; nothing is saved."
        ),
        responses=error_responses(422),
    )
    async def preview(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[PreviewExpiry],
    ) -> ExpiryPreviewEnvelope:
        data = await strict_body(request, PreviewExpiry)
        async with caller.database.read() as connection:
            preview = await service.preview_expiry(connection, caller.merchant_id, data)
        return ExpiryPreviewEnvelope(data=preview)
