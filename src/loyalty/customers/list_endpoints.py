from __future__ import annotations

import uuid
from typing import Literal

from litestar import Controller, get
from litestar.params import Parameter

from loyalty.customers import listing
from loyalty.customers.schemas import CustomerPage
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses
from loyalty.ledger.service import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX

CustomerStatusFilter = Literal["active", "inactive", "excluded", "excluded_by_customer", "erased"]
CustomerSort = Literal["-created_at", "created_at", "-points_balance", "points_balance"]


class CustomerListController(Controller):
    path = "/api/v1/customers"
    security = BEARER_SECURITY
    tags = ["Customers"]

    @get(
        "/",
        opt={"scope": "customers:read"},
        summary="List and search the customers",
        description=(
            "The merchant's customers, each as `GET /api/v1/public/customers` returns it "
            "(`next_tier` and `amount_to_next_tier` are null here), with cursor pagination. "
            "`search` matches the platform id exactly, or an email, first name or last name "
            "by prefix, case-insensitively. Erased customers are left out unless "
            "`status=erased`. `sort`: `-created_at` (newest first, the default), "
            "`created_at`, `-points_balance`, `points_balance`; a cursor belongs to its sort."
        ),
        responses=error_responses(422),
    )
    async def list_customers(
        self,
        caller: CurrentCaller,
        search: str | None = Parameter(
            required=False,
            max_length=listing.SEARCH_CHARS_MAX,
            description=(
                "A platform id (exact), or the start of an email, first name or last name "
                "(case-insensitive). Blank: no search."
            ),
        ),
        status: CustomerStatusFilter | None = Parameter(
            required=False,
            description="Only customers in this status; all but erased ones when left out.",
        ),
        tier_id: uuid.UUID | None = Parameter(
            required=False, description="Only customers in this tier."
        ),
        sort: CustomerSort = Parameter(
            default=listing.SORT_DEFAULT, description="The order of the list."
        ),
        cursor: str | None = Parameter(
            required=False,
            max_length=200,
            description="The `next_cursor` of the previous page (with the same `sort`).",
        ),
        limit: int = Parameter(
            default=PAGE_LIMIT_DEFAULT, description=f"Page size, 1 to {PAGE_LIMIT_MAX}."
        ),
    ) -> CustomerPage:
        async with caller.database.read() as connection:
            return await listing.list_customers(
                connection,
                caller.merchant_id,
                search=search,
                status=status,
                tier_id=tier_id,
                sort=sort,
                cursor=cursor,
                limit=limit,
            )
