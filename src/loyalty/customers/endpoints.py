from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import privacy, service
from loyalty.customers.privacy_schemas import CustomerDataEnvelope
from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import (
    ChangeCustomerStatus,
    CustomerEnvelope,
    EnrolCustomer,
    ReferralEnvelope,
)
from loyalty.http.body import strict_body
from loyalty.http.dependencies import Caller, CurrentCaller, CustomerRefQuery
from loyalty.http.fastpath import FAST_PATH_OPT_KEY, FastCall, FastEndpoint, Reply, ok
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotent_write, outcome_response, request_idempotency


async def read_customer(caller: Caller, customer_ref: CustomerRef) -> CustomerEnvelope:
    """``GET /api/v1/public/customers`` (served by Litestar or the fast path)."""
    customer = await service.get_customer(caller.database, caller.merchant_id, customer_ref)
    return CustomerEnvelope(data=customer)


async def _fast_read_customer(call: FastCall) -> Reply:
    return ok(await read_customer(call.caller, call.customer_ref))


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
        opt={"scope": "customers:read", FAST_PATH_OPT_KEY: FastEndpoint(_fast_read_customer)},
        summary="Get a customer with every balance",
        responses=error_responses(404, 422),
    )
    async def get_customer(
        self,
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
    ) -> CustomerEnvelope:
        return await read_customer(caller, customer_ref)

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

    @delete(
        "/",
        opt={"scope": "customers:write"},
        status_code=204,
        summary="Erase a customer (GDPR erasure request)",
        description=(
            "Removes the customer's personal data (email, names, date of birth, status "
            "reason, referral code) and frees its platform id: the same `customer_id` can "
            "enrol again, as a new customer. In one transaction, ordered with the customer's "
            "other movements: a remaining balance is written off by an `erase` debit (not "
            "lifetime), pending credits are cancelled, active and inactive rewards are "
            "deleted, the status becomes `erased`, and a `customer.erased` event is written "
            "(the customer as left, named by its `id` only). Ledger entries, orders, refunds "
            "and rewarded actions stay, anonymous; the personal values in the customer's past "
            "events are blanked and their `customer_id` set to null. Afterwards the platform "
            "id and the email answer 404 everywhere (a second erasure too), and movements "
            "sent for it answer 404. Send an `Idempotency-Key` header to make retries safe."
        ),
        responses={
            204: ResponseSpec(data_container=None, description="Erased; no body."),
            **error_responses(404, 409, 422),
        },
    )
    async def erase(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
    ) -> Response[None]:
        key, fingerprint = await request_idempotency(request)
        outcome = await privacy.erase_customer(
            caller.ledger_writer,
            caller.merchant_id,
            customer_ref,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @get(
        "/data",
        opt={"scope": "customers:read"},
        summary="Everything held about a customer (GDPR access request)",
        description=(
            "One JSON document, read in one snapshot: the `customer` with every balance, "
            "every ledger entry (`transactions`, as the activity log shows them), "
            "`pending_credits`, `customer_rewards`, `orders`, `refunds`, rewarded `actions` "
            "and the `referral` (code, referrer, referrals completed). Each list is complete "
            "(not paginated), newest first. Erased customers answer 404."
        ),
        responses=error_responses(404, 422),
    )
    async def customer_data(
        self, caller: CurrentCaller, customer_ref: CustomerRefQuery
    ) -> CustomerDataEnvelope:
        data = await privacy.customer_data(caller.database, caller.merchant_id, customer_ref)
        return CustomerDataEnvelope(data=data)
