from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from loyalty.customers.endpoints import CUSTOMER_EMAIL_PARAMETER, CUSTOMER_ID_PARAMETER
from loyalty.customers.service import CustomerRef
from loyalty.db.engine import Database
from loyalty.http.auth import current_principal
from loyalty.http.openapi import error_responses
from loyalty.rewards import service
from loyalty.rewards.schemas import RedeemableEnvelope


class RedeemableController(Controller):
    path = "/api/v1/public/customers/rewards"
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
        request: Request[Any, Any, Any],
        customer_id: str | None = CUSTOMER_ID_PARAMETER,
        customer_email: str | None = CUSTOMER_EMAIL_PARAMETER,
    ) -> RedeemableEnvelope:
        principal = current_principal(request)
        database: Database = request.app.state.database
        ref = CustomerRef(customer_id=customer_id, customer_email=customer_email)
        async with database.read() as connection:
            redeemable = await service.get_redeemable(connection, principal.merchant_id, ref)
        return RedeemableEnvelope(data=redeemable)
