from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import service
from loyalty.customers.schemas import CustomerEnvelope, EnrolCustomer
from loyalty.customers.service import CustomerRef
from loyalty.db.engine import Database
from loyalty.http.auth import current_principal
from loyalty.http.body import strict_body
from loyalty.http.openapi import error_responses
from loyalty.http.writes import idempotent_write

CUSTOMER_ID_PARAMETER = Parameter(
    description="The platform customer id, e.g. a Shopify customer id.",
    required=False,
    max_length=255,
)
CUSTOMER_EMAIL_PARAMETER = Parameter(
    description="Alternative to customer_id: the customer's email (case-insensitive).",
    required=False,
    max_length=254,
)


class CustomerController(Controller):
    path = "/api/v1/public/customers"
    tags = ["Customers"]

    @post(
        "/",
        opt={"scope": "customers:write"},
        status_code=201,
        summary="Enrol or update a customer",
        description=(
            "Upsert by `customer_id`: 201 when the customer is new, 200 when updated. "
            "Only the fields sent are changed. Enrolling never moves points."
        ),
        responses=error_responses(400, 409, 422),
    )
    async def enrol(
        self, request: Request[Any, Any, Any], data: JSONBody[EnrolCustomer]
    ) -> Response[CustomerEnvelope]:
        principal = current_principal(request)
        data = await strict_body(request, EnrolCustomer)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            customer, created = await service.enrol_customer(
                connection, principal.merchant_id, data
            )
            return (201 if created else 200), CustomerEnvelope(data=customer)

        return await idempotent_write(request, principal, operation)

    @get(
        "/",
        opt={"scope": "customers:read"},
        summary="Get a customer with every balance",
        responses=error_responses(404, 422),
    )
    async def get_customer(
        self,
        request: Request[Any, Any, Any],
        customer_id: str | None = CUSTOMER_ID_PARAMETER,
        customer_email: str | None = CUSTOMER_EMAIL_PARAMETER,
    ) -> CustomerEnvelope:
        principal = current_principal(request)
        database: Database = request.app.state.database
        ref = CustomerRef(customer_id=customer_id, customer_email=customer_email)
        async with database.read() as connection:
            customer = await service.get_customer(connection, principal.merchant_id, ref)
        return CustomerEnvelope(data=customer)
