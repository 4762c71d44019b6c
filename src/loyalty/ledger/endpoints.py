from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.endpoints import CUSTOMER_EMAIL_PARAMETER, CUSTOMER_ID_PARAMETER
from loyalty.customers.service import CustomerRef
from loyalty.db.engine import Database
from loyalty.http.auth import current_principal
from loyalty.http.body import strict_body
from loyalty.http.openapi import error_responses
from loyalty.http.writes import idempotent_write
from loyalty.ledger import service
from loyalty.ledger.schemas import CreateTransaction, TransactionEnvelope, TransactionPage


class TransactionController(Controller):
    path = "/api/v1/public/customers/transactions"
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
        responses=error_responses(400, 404, 409, 422),
    )
    async def create_transaction(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[CreateTransaction],
        customer_id: str | None = CUSTOMER_ID_PARAMETER,
        customer_email: str | None = CUSTOMER_EMAIL_PARAMETER,
    ) -> Response[TransactionEnvelope]:
        principal = current_principal(request)
        data = await strict_body(request, CreateTransaction)
        ref = CustomerRef(customer_id=customer_id, customer_email=customer_email)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            transaction = await service.adjust_points(connection, principal.merchant_id, ref, data)
            return 201, TransactionEnvelope(data=transaction)

        return await idempotent_write(request, principal, operation)

    @get(
        "/",
        opt={"scope": "transactions:read"},
        summary="Activity log",
        description="The customer's ledger entries, newest first, with cursor pagination.",
        responses=error_responses(404, 422),
    )
    async def list_transactions(
        self,
        request: Request[Any, Any, Any],
        customer_id: str | None = CUSTOMER_ID_PARAMETER,
        customer_email: str | None = CUSTOMER_EMAIL_PARAMETER,
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
        principal = current_principal(request)
        database: Database = request.app.state.database
        ref = CustomerRef(customer_id=customer_id, customer_email=customer_email)
        async with database.read() as connection:
            return await service.list_transactions(
                connection, principal.merchant_id, ref, limit=limit, cursor=cursor
            )
