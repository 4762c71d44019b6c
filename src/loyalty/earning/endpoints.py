from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.earning import service
from loyalty.earning.schemas import CreateEarnRule, EarnRuleEnvelope, EarnRulePage, UpdateEarnRule
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write


class EarnRuleController(Controller):
    """How the programme grants points: purchases and customer actions."""

    path = "/api/v1/earn-rules"
    security = BEARER_SECURITY
    tags = ["Earning"]

    @get("/", opt={"scope": "settings:read"}, summary="The earn rules", responses=error_responses())
    async def list_rules(self, caller: CurrentCaller) -> EarnRulePage:
        async with caller.database.read() as connection:
            return await service.list_rules(connection, caller.merchant_id)

    @post(
        "/",
        opt={"scope": "settings:write"},
        status_code=201,
        summary="Add an earn rule (one per type)",
        responses=error_responses(409, 422),
    )
    async def create_rule(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[CreateEarnRule]
    ) -> Response[EarnRuleEnvelope]:
        data = await strict_body(request, CreateEarnRule)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            rule = await service.create_rule(connection, caller.merchant_id, data)
            return 201, EarnRuleEnvelope(data=rule)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/{rule_id:str}",
        opt={"scope": "settings:read"},
        summary="One earn rule",
        responses=error_responses(404),
    )
    async def get_rule(self, caller: CurrentCaller, rule_id: FromPath[str]) -> EarnRuleEnvelope:
        async with caller.database.read() as connection:
            rule = await service.get_rule(connection, caller.merchant_id, rule_id)
        return EarnRuleEnvelope(data=rule)

    @patch(
        "/{rule_id:str}",
        opt={"scope": "settings:write"},
        summary="Change an earn rule",
        responses=error_responses(404, 422),
    )
    async def update_rule(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        rule_id: FromPath[str],
        data: JSONBody[UpdateEarnRule],
    ) -> Response[EarnRuleEnvelope]:
        data = await strict_body(request, UpdateEarnRule)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            rule = await service.update_rule(connection, caller.merchant_id, rule_id, data)
            return 200, EarnRuleEnvelope(data=rule)

        return await idempotent_write(request, caller.principal, operation)
