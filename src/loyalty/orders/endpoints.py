from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import outcome_response, request_idempotency
from loyalty.orders import service
from loyalty.orders.schemas import (
    EstimateBody,
    EstimateEnvelope,
    OrderEnvelope,
    PlaceOrderBody,
    RefundBody,
    RefundEnvelope,
)


class OrderController(Controller):
    """Orders and refunds sent by the shop's backend."""

    path = "/api/v1/public/orders"
    security = BEARER_SECURITY
    tags = ["Orders"]

    @post(
        "/",
        opt={"scope": "orders:write"},
        status_code=201,
        summary="Record an order (earns its points)",
        description=(
            "Records the order once (idempotent on `order_id`: posting it again answers 200 "
            "with the order and changes nothing; other content under the same `order_id` is "
            "422 `order_conflict`), enrols the customer if needed, earns per the purchase rule "
            "(held as pending for its `pending_days`; the tier multiplier applies), adds the "
            "total to the customer's total spent and marks customer rewards whose "
            "`discount_codes` it used. Customers who do not earn (no purchase rule, inactive or "
            "excluded) still have the order recorded; `not_earned_reason` says why."
        ),
        responses={
            200: ResponseSpec(
                data_container=OrderEnvelope,
                description="The order was posted before: the order as it is now, no change.",
            ),
            **error_responses(409, 422),
        },
    )
    async def place_order(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[PlaceOrderBody]
    ) -> Response[OrderEnvelope]:
        data = await strict_body(request, PlaceOrderBody)
        key, fingerprint = await request_idempotency(request)
        outcome = await service.place_order(
            caller.database,
            caller.ledger_writer,
            caller.merchant_id,
            data,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @post(
        "/estimate",
        opt={"scope": "rewards:read"},
        status_code=200,
        summary="Points a cart would earn",
        description=(
            "For product pages and carts (guests too): the points `total` would earn now under "
            "the purchase rule, with the customer's status and tier multiplier when "
            "`customer_id` is given. Nothing is written."
        ),
        responses=error_responses(404, 422),
    )
    async def estimate(
        self, request: Request[Any, Any, Any], caller: CurrentCaller, data: JSONBody[EstimateBody]
    ) -> EstimateEnvelope:
        data = await strict_body(request, EstimateBody)
        return EstimateEnvelope(
            data=await service.estimate(caller.database, caller.merchant_id, data)
        )

    @post(
        "/{order_id:str}/refunds",
        opt={"scope": "orders:write"},
        status_code=201,
        summary="Refund or cancel an order (takes its points back)",
        description=(
            "Refunds `amount` (left out: all that is left). The order's points are taken back "
            "in proportion: from the pending credit while they are held, else by a debit that "
            "counts against lifetime points. Points the customer already spent are not taken "
            "below zero: they are recorded as the refund's `shortfall`. A refund above what is "
            "left is 422 `refund_exceeds_order`; an unknown order is 404 `order_not_found`."
        ),
        responses=error_responses(404, 422),
    )
    async def refund(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        order_id: FromPath[str],
        data: JSONBody[RefundBody | None] = None,
    ) -> Response[RefundEnvelope]:
        body = await request.body()
        data = await strict_body(request, RefundBody) if body.strip() else RefundBody()
        key, fingerprint = await request_idempotency(request)
        outcome = await service.refund_order(
            caller.database,
            caller.ledger_writer,
            caller.merchant_id,
            order_id,
            data,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)
