from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import CustomerRef
from loyalty.http.body import strict_body
from loyalty.http.dependencies import Caller, CurrentCaller, CustomerRefQuery
from loyalty.http.fastpath import FAST_PATH_OPT_KEY, FastCall, FastEndpoint, Reply, ok
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write, outcome_response, request_idempotency
from loyalty.rewards import service
from loyalty.rewards.schemas import (
    ChangeCustomerRewardStatus,
    CreateReward,
    CustomerRewardEnvelope,
    CustomerRewardMovementEnvelope,
    RedeemableEnvelope,
    RedeemReward,
    RewardEnvelope,
    RewardPage,
    UpdateReward,
    UseReward,
)


async def read_redeemable(caller: Caller, customer_ref: CustomerRef) -> RedeemableEnvelope:
    """``GET …/rewards/redeemable`` (served by Litestar or the fast path)."""
    redeemable = await service.get_redeemable(caller.database, caller.merchant_id, customer_ref)
    return RedeemableEnvelope(data=redeemable)


async def _fast_read_redeemable(call: FastCall) -> Reply:
    return ok(await read_redeemable(call.caller, call.customer_ref))


class RedeemableController(Controller):
    path = "/api/v1/public/customers/rewards"
    security = BEARER_SECURITY
    tags = ["Rewards"]

    @get(
        "/redeemable",
        opt={"scope": "rewards:read", FAST_PATH_OPT_KEY: FastEndpoint(_fast_read_redeemable)},
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
        return await read_redeemable(caller, customer_ref)

    @post(
        "/redeem",
        opt={"scope": "rewards:write"},
        status_code=201,
        summary="Redeem a reward for points",
        description=(
            "Debits the reward's `points_cost` (not lifetime) and issues the customer reward, "
            "with a unique `discount_code` (store credit goes to `store_credit_balance` "
            "instead), in one transaction. 422 `insufficient_points`, `reward_inactive`, "
            "`customer_excluded` or `reward_limit_reached` move nothing. Send an "
            "`Idempotency-Key` header to make retries safe."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def redeem(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[RedeemReward],
    ) -> Response[CustomerRewardMovementEnvelope]:
        data = await strict_body(request, RedeemReward)
        key, fingerprint = await request_idempotency(request)
        outcome = await service.redeem(
            caller.ledger_writer,
            caller.merchant_id,
            customer_ref,
            data,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @get(
        "/{customer_reward_id:str}",
        opt={"scope": "rewards:read"},
        summary="One customer reward",
        responses=error_responses(404),
    )
    async def get_customer_reward(
        self, caller: CurrentCaller, customer_reward_id: FromPath[str]
    ) -> CustomerRewardEnvelope:
        async with caller.database.read() as connection:
            detail = await service.get_customer_reward(
                connection, caller.merchant_id, customer_reward_id
            )
        return CustomerRewardEnvelope(data=detail)

    @post(
        "/{customer_reward_id:str}/revert",
        opt={"scope": "rewards:write"},
        status_code=200,
        summary="Refund an unused reward",
        description=(
            "Gives the points back with a ledger credit that does not count toward lifetime "
            "points, and sets the reward to `revert`. Only `active` rewards can be reverted; "
            "others answer 409 `invalid_reward_state`."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def revert(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_reward_id: FromPath[str],
    ) -> Response[CustomerRewardMovementEnvelope]:
        key, fingerprint = await request_idempotency(request)
        outcome = await service.revert(
            caller.database,
            caller.ledger_writer,
            caller.merchant_id,
            customer_reward_id,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @post(
        "/{customer_reward_id:str}/use",
        opt={"scope": "rewards:write"},
        status_code=200,
        summary="Mark a reward used",
        description=(
            "Records that the code was applied, optionally to `order_id`. Only `active` "
            "rewards can be used; others answer 409 `invalid_reward_state`."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def use(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_reward_id: FromPath[str],
        data: JSONBody[UseReward | None] = None,
    ) -> Response[CustomerRewardEnvelope]:
        body = await request.body()
        data = await strict_body(request, UseReward) if body.strip() else UseReward()

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            detail = await service.use_reward(
                connection, caller.merchant_id, customer_reward_id, data
            )
            return 200, CustomerRewardEnvelope(data=detail)

        return await idempotent_write(request, caller.principal, operation)

    @patch(
        "/{customer_reward_id:str}",
        opt={"scope": "rewards:write"},
        summary="Suspend, restore or delete a customer reward",
        description=(
            "`inactive` suspends an active code, `active` restores it, `deleted` ends it "
            "(no refund: revert refunds). Other changes answer 409 `invalid_reward_state`."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def change_status(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_reward_id: FromPath[str],
        data: JSONBody[ChangeCustomerRewardStatus],
    ) -> Response[CustomerRewardEnvelope]:
        data = await strict_body(request, ChangeCustomerRewardStatus)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            detail = await service.change_status(
                connection, caller.merchant_id, customer_reward_id, data
            )
            return 200, CustomerRewardEnvelope(data=detail)

        return await idempotent_write(request, caller.principal, operation)


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
