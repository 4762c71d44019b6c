from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import service
from loyalty.customers.schemas import (
    ChangeCustomerStatus,
    CustomerEnvelope,
    EnrolCustomer,
    ReferralEnvelope,
)
from loyalty.http.body import strict_body
from loyalty.http.dependencies import CurrentCaller, CustomerRefQuery
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write


class CustomerController(Controller):
    path = "/api/v1/public/customers"
    security = BEARER_SECURITY
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
        responses={
            200: ResponseSpec(
                data_container=CustomerEnvelope, description="An enrolled customer, updated."
            ),
            **error_responses(409, 422),
        },
    )
    async def enrol(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[EnrolCustomer],
    ) -> Response[CustomerEnvelope]:
        data = await strict_body(request, EnrolCustomer)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            customer, created = await service.enrol_customer(connection, caller.merchant_id, data)
            return (201 if created else 200), CustomerEnvelope(data=customer)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/",
        opt={"scope": "customers:read"},
        summary="Get a customer with every balance",
        responses=error_responses(404, 422),
    )
    async def get_customer(
        self,
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
    ) -> CustomerEnvelope:
        customer = await service.get_customer(caller.database, caller.merchant_id, customer_ref)
        return CustomerEnvelope(data=customer)

    @patch(
        "/status",
        opt={"scope": "customers:write"},
        summary="Change a customer's status",
        description=(
            "`active` customers earn and redeem; `inactive` ones redeem but do not earn; "
            "`excluded` and `excluded_by_customer` neither earn nor redeem (422 "
            "`customer_excluded`). Manual adjustments work for every status."
        ),
        responses=error_responses(404, 422),
    )
    async def change_status(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[ChangeCustomerStatus],
    ) -> Response[CustomerEnvelope]:
        data = await strict_body(request, ChangeCustomerStatus)

        async def operation(connection: AsyncConnection) -> tuple[int, Any]:
            customer = await service.change_status(
                connection, caller.merchant_id, customer_ref, data
            )
            return 200, CustomerEnvelope(data=customer)

        return await idempotent_write(request, caller.principal, operation)

    @get(
        "/referral",
        opt={"scope": "customers:read"},
        summary="The customer's referral code",
        description=(
            "The code friends give when they enrol (`referral_code` on `POST "
            "/api/v1/public/customers` or on their first order); it is drawn the first time it "
            "is asked for and never changes. A referral completes with the friend's first "
            "order, rewarding both per the referral earn rule; `referred_completed` counts them."
        ),
        responses=error_responses(404, 422),
    )
    async def referral(
        self, caller: CurrentCaller, customer_ref: CustomerRefQuery
    ) -> ReferralEnvelope:
        async def work(connection: AsyncConnection) -> ReferralEnvelope:
            referral = await service.get_referral(connection, caller.merchant_id, customer_ref)
            return ReferralEnvelope(data=referral)

        return await caller.database.transaction(work)
