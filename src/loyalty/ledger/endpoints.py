from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter

from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import ActionEnvelope, PostAction
from loyalty.http.body import strict_body
from loyalty.http.dependencies import Caller, CurrentCaller, CustomerRefQuery
from loyalty.http.fastpath import FAST_PATH_OPT_KEY, FastCall, FastEndpoint, Reply, outcome_reply
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.http.writes import idempotency_of, outcome_response, request_idempotency
from loyalty.ledger import service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.schemas import (
    ApprovePending,
    CreateTransaction,
    CreateTransfer,
    PendingCreditEnvelope,
    PendingCreditPage,
    PendingReleaseEnvelope,
    TransactionEnvelope,
    TransactionPage,
    TransferEnvelope,
)


async def create_transaction(
    caller: Caller,
    customer_ref: CustomerRef,
    data: CreateTransaction,
    idempotency_key: str | None,
    fingerprint: str,
) -> Outcome:
    """``POST /api/v1/public/customers/transactions`` (served by Litestar or the fast path)."""
    return await service.adjust_points(
        caller.ledger_writer,
        caller.merchant_id,
        customer_ref,
        data,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )


async def _fast_create_transaction(call: FastCall) -> Reply:
    key, fingerprint = idempotency_of(
        call.idempotency_key, call.method, call.path, call.query, call.body
    )
    outcome = await create_transaction(call.caller, call.customer_ref, call.data, key, fingerprint)
    return outcome_reply(outcome.status_code, outcome.body, outcome.replayed)


class TransactionController(Controller):
    path = "/api/v1/public/customers/transactions"
    security = BEARER_SECURITY
    tags = ["Transactions"]

    @post(
        "/",
        opt={
            "scope": "transactions:write",
            FAST_PATH_OPT_KEY: FastEndpoint(_fast_create_transaction, body=CreateTransaction),
        },
        status_code=201,
        summary="Add or remove points",
        description=(
            "Credit (positive `points`) or debit (negative) a customer's balance. Zero is "
            "rejected; a debit beyond the balance answers 422 `insufficient_points` and moves "
            "nothing. A credit sent with `pending_days` or `available_at` is held as pending "
            "instead (201 with the pending credit): counted in `pending_points`, released into "
            "the balance when due. Send an `Idempotency-Key` header to make retries safe."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def create_transaction(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[CreateTransaction],
    ) -> Response[TransactionEnvelope | PendingCreditEnvelope]:
        data = await strict_body(request, CreateTransaction)
        key, fingerprint = await request_idempotency(request)
        outcome = await create_transaction(caller, customer_ref, data, key, fingerprint)
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


class TransferController(Controller):
    path = "/api/v1/public/customers/transfers"
    security = BEARER_SECURITY
    tags = ["Transactions"]

    @post(
        "/",
        opt={"scope": "transactions:write"},
        status_code=201,
        summary="Transfer points between customers",
        description=(
            "Moves `points` from one customer to another (merging duplicate accounts, "
            "gifting): one debit and one credit of kind `transfer`, in one transaction, "
            "never overdrawing (422 `insufficient_points`, nothing moved). Customers are named "
            "by platform id or email. Lifetime points do not move unless `apply_to_lifetime`. "
            "Send an `Idempotency-Key` header to make retries safe."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def create_transfer(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        data: JSONBody[CreateTransfer],
    ) -> Response[TransferEnvelope]:
        data = await strict_body(request, CreateTransfer)
        key, fingerprint = await request_idempotency(request)
        outcome = await service.transfer_points(
            caller.ledger_writer,
            caller.merchant_id,
            data,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)


class PendingController(Controller):
    path = "/api/v1/public/customers/pending"
    security = BEARER_SECURITY
    tags = ["Transactions"]

    @get(
        "/",
        opt={"scope": "transactions:read"},
        summary="Pending credits",
        description="The customer's credits on hold (and, past them, released or cancelled).",
        responses=error_responses(404, 422),
    )
    async def list_pending(
        self,
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        status: Literal["pending", "released", "cancelled"] | None = Parameter(
            required=False, description="Only credits in this status; all when left out."
        ),
        limit: int = Parameter(
            default=service.PAGE_LIMIT_DEFAULT,
            description=f"Page size, 1 to {service.PAGE_LIMIT_MAX}.",
        ),
        cursor: str | None = Parameter(required=False, max_length=200),
    ) -> PendingCreditPage:
        async with caller.database.read() as connection:
            return await service.list_pending(
                connection,
                caller.merchant_id,
                customer_ref,
                status=status,
                limit=limit,
                cursor=cursor,
            )

    @post(
        "/approve",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Release pending points now",
        description=(
            "Releases `pending_id`, or every pending credit of the customer when it is left "
            "out, into the available balance at once (each a ledger credit). A credit no "
            "longer pending answers 409 `invalid_pending_state`."
        ),
        responses=error_responses(404, 409, 422),
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[ApprovePending | None] = None,
    ) -> Response[PendingReleaseEnvelope]:
        body = await request.body()
        data = await strict_body(request, ApprovePending) if body.strip() else ApprovePending()
        key, fingerprint = await request_idempotency(request)
        outcome = await service.release_pending(
            caller.ledger_writer,
            caller.merchant_id,
            customer_ref,
            data.pending_id,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)

    @post(
        "/{pending_id:str}/cancel",
        opt={"scope": "transactions:write"},
        status_code=200,
        summary="Cancel a pending credit",
        description=(
            "Voids a credit still on hold (e.g. its order was cancelled): `pending_points` goes "
            "down, nothing reaches the balance. Released or cancelled credits answer 409 "
            "`invalid_pending_state`."
        ),
        responses=error_responses(404, 409),
    )
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        pending_id: FromPath[str],
    ) -> Response[PendingCreditEnvelope]:
        key, fingerprint = await request_idempotency(request)
        async with caller.database.read() as connection:
            owner = await service.pending_owner(connection, caller.merchant_id, pending_id)
        outcome = await service.cancel_pending(
            caller.ledger_writer,
            caller.merchant_id,
            owner.ref,
            owner.pending_id,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)


class ActionController(Controller):
    path = "/api/v1/public/customers/actions"
    security = BEARER_SECURITY
    tags = ["Earning"]

    @post(
        "/",
        opt={"scope": "transactions:write"},
        status_code=201,
        summary="Reward a customer action",
        description=(
            '`{"action": type}` (newsletter, sms, create_account, follow_… / share_…): 201 '
            "with `rewarded: true` and the points when the action's earn rule rewards it; 200 "
            "with `rewarded: false` and the `reason` otherwise (`limit_reached` when already "
            "rewarded as often as the rule allows, `no_rule`, `rule_inactive`, "
            "`customer_inactive`, `customer_excluded`…). The customer's `rewarded_actions` "
            "lists what was rewarded."
        ),
        responses={
            200: ResponseSpec(
                data_container=ActionEnvelope,
                description="Not rewarded (`rewarded: false`, with the `reason`).",
            ),
            **error_responses(404, 422),
        },
    )
    async def post_action(
        self,
        request: Request[Any, Any, Any],
        caller: CurrentCaller,
        customer_ref: CustomerRefQuery,
        data: JSONBody[PostAction],
    ) -> Response[ActionEnvelope]:
        data = await strict_body(request, PostAction)
        key, fingerprint = await request_idempotency(request)
        outcome = await service.reward_action(
            caller.ledger_writer,
            caller.merchant_id,
            customer_ref,
            data.action,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        return outcome_response(outcome.status_code, outcome.body, outcome.replayed)
