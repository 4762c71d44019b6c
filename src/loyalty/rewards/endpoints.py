from __future__ import annotations

from litestar import Controller, get

from loyalty.http.dependencies import CurrentCaller, CustomerRefQuery
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.rewards import service
from loyalty.rewards.schemas import RedeemableEnvelope


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
