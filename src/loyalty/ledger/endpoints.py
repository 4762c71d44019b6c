from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, Parameter

from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller, CustomerRefQuery
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import outcome_response, request_idempotency
from loyalty.ledger import service
from loyalty.ledger.schemas import CreateTransaction, TransactionEnvelope, TransactionPage


class TransactionController(Controller):
    path = "/api/v1/public/customers/transactions"
    security = BEARER_SECURITY
    tags = ["Transactions"]

    @post(
        "/",
        opt={"scope": "transactions:write"},
        status_code=201,
        summary="Add or remove points",
        description=(
            "Credit (positive `points`) or debit (negative) a customer's balance. Zero is "
            "rejected; a debit beyond the balance answers 422 `insufficient_points` and moves "
            "nothing. Send an `Idempotency-Key` header to make retries safe."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def create_transaction(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[CreateTransaction],
    ) -> Response[TransactionEnvelope]:
        data = await strict_body(request, CreateTransaction)
        key, fingerprint = await request_idempotency(request)
        outcome = await service.adjust_points(
            caller.ledger_writer,
            caller.merchant_id,
            customer_ref,
            data,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @get(
        "/",
        opt={"scope": "transactions:read"},
        summary="Activity log",
        description="The customer's ledger entries, newest first, with cursor pagination.",
        responses=error_responses(404, 422),
    )
    async def list_transactions(
        self,
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        limit: int = Parameter(
            default=service.PAGE_LIMIT_DEFAULT,
            description=f"Page size, 1 to {service.PAGE_LIMIT_MAX}.",
        ),
        cursor: str | None = Parameter(
            required=False,
            max_length=200,
            description="The `next_cursor` of the previous page.",
        ),
    ) -> TransactionPage:
        async with caller.database.read() as connection:
            return await service.list_transactions(
                connection, caller.merchant_id, customer_ref, limit=limit, cursor=cursor
            )
