from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller, CustomerRefQuery
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write
from loyalty.rewards import service
from loyalty.rewards.schemas import (
    CreateReward,
    RedeemableEnvelope,
    RewardEnvelope,
    RewardPage,
    UpdateReward,
)


class RedeemableController(Controller):
    path = "/api/v1/public/customers/rewards"
    security = BEARER_SECURITY
    tags = ["Rewards"]

    @get(
        "/redeemable",
        opt={"scope": "rewards:read"},
        summary="Balance and the rewards the customer can redeem",
        description=(
            "The customer's redeemable balance, the active catalogue with `can_redeem` and "
            "`points_needed` per reward, and the customer's rewards, newest first."
        ),
        responses=error_responses(404, 422),
    )
    async def redeemable(
        self,
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
    ) -> RedeemableEnvelope:
        redeemable = await service.get_redeemable(caller.database, caller.merchant_id, customer_ref)
        return RedeemableEnvelope(data=redeemable)


class RewardController(Controller):
    """The merchant's reward catalogue."""

    path = "/api/v1/rewards"
    security = BEARER_SECURITY
    tags = ["Rewards"]

    @post(
        "/",
        opt={"scope": "rewards:write"},
        status_code=201,
        summary="Add a reward to the catalogue",
        responses=error_responses(422),
    )
    async def create_reward(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[CreateReward]
    ) -> Response[RewardEnvelope]:
        data = await strict_body(request, CreateReward)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            reward = await service.create_reward(connection, caller.merchant_id, data)
            return 201, RewardEnvelope(data=reward)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/",
        opt={"scope": "rewards:read"},
        summary="The catalogue, by number",
        description="Rewards not deleted, active or not, in number order.",
        responses=error_responses(422),
    )
    async def list_rewards(
        self,
        caller: CurrentCaller,
        limit: int = Parameter(default=20, description="Page size, 1 to 100."),
        cursor: str | None = Parameter(required=False, max_length=200),
    ) -> RewardPage:
        async with caller.database.read() as connection:
            return await service.list_rewards(
                connection, caller.merchant_id, limit=limit, cursor=cursor
            )

    @get(
        "/{reward_id:str}",
        opt={"scope": "rewards:read"},
        summary="One reward (deleted ones too, for history)",
        responses=error_responses(404),
    )
    async def get_reward(self, caller: CurrentCaller, reward_id: FromPath[str]) -> RewardEnvelope:
        async with caller.database.read() as connection:
            reward = await service.get_reward(connection, caller.merchant_id, reward_id)
        return RewardEnvelope(data=reward)

    @patch(
        "/{reward_id:str}",
        opt={"scope": "rewards:write"},
        summary="Change a reward",
        responses=error_responses(404, 422),
    )
    async def update_reward(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        reward_id: FromPath[str],
        data: JSONBody[UpdateReward],
    ) -> Response[RewardEnvelope]:
        data = await strict_body(request, UpdateReward)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            reward = await service.update_reward(connection, caller.merchant_id, reward_id, data)
            return 200, RewardEnvelope(data=reward)

        return await idempotent_write(request, caller.principal, operation)

    @delete(
        "/{reward_id:str}",
        opt={"scope": "rewards:write"},
        status_code=204,
        summary="Delete a reward (deactivated and hidden; history kept)",
        responses=error_responses(404),
    )
    async def delete_reward(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, reward_id: FromPath[str]
    ) -> Response[None]:
        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            await service.delete_reward(connection, caller.merchant_id, reward_id)
            return 204, None

        return await idempotent_write(request, caller.principal, operation)
