from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write
from loyalty.tiers import service
from loyalty.tiers.schemas import CreateTier, TierEnvelope, TierPage, UpdateTier


class TierController(Controller):
    """The programme's VIP tiers."""

    path = "/api/v1/tiers"
    security = BEARER_SECURITY
    tags = ["Tiers"]

    @get(
        "/",
        opt={"scope": "settings:read"},
        summary="The tiers, lowest threshold first",
        responses=error_responses(),
    )
    async def list_tiers(self, caller: CurrentCaller) -> TierPage:
        async with caller.database.read() as connection:
            return await service.list_tiers(connection, caller.merchant_id)

    @post(
        "/",
        opt={"scope": "settings:write"},
        status_code=201,
        summary="Add a tier",
        description=(
            "Customers reach a tier when their basis (lifetime points earned or amount spent, "
            "over all time or the last `window_days`) is at least its `threshold`. `basis` and "
            "`window_days` are the programme's, shared by every tier. Every customer's tier is "
            "recomputed by the scheduler after a change; movements recompute it at once."
        ),
        responses=error_responses(409, 422),
    )
    async def create_tier(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[CreateTier]
    ) -> Response[TierEnvelope]:
        data = await strict_body(request, CreateTier)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            tier = await service.create_tier(connection, caller.merchant_id, data)
            return 201, TierEnvelope(data=tier)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/{tier_id:str}",
        opt={"scope": "settings:read"},
        summary="One tier",
        responses=error_responses(404),
    )
    async def get_tier(self, caller: CurrentCaller, tier_id: FromPath[str]) -> TierEnvelope:
        async with caller.database.read() as connection:
            tier = await service.get_tier(connection, caller.merchant_id, tier_id)
        return TierEnvelope(data=tier)

    @patch(
        "/{tier_id:str}",
        opt={"scope": "settings:write"},
        summary="Change a tier",
        description="Only the fields sent change; `basis` and `window_days` change for every tier.",
        responses=error_responses(404, 409, 422),
    )
    async def update_tier(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        tier_id: FromPath[str],
        data: JSONBody[UpdateTier],
    ) -> Response[TierEnvelope]:
        data = await strict_body(request, UpdateTier)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            tier = await service.update_tier(connection, caller.merchant_id, tier_id, data)
            return 200, TierEnvelope(data=tier)

        return await idempotent_write(request, caller.principal, operation)
