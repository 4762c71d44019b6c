from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Controller, get
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter
from litestar.response import Stream

from loyalty.db.types import utc_now
from loyalty.exports import service
from loyalty.http.dependencies import CurrentCaller
from loyalty.http.openapi import BEARER_SECURITY, error_responses

_HEADERS = [
    ResponseHeader(
        name="Content-Disposition",
        description=(
            "`attachment; filename=customers-YYYY-MM-DD.csv` (or `transactions-…`): "
            "the day of the export."
        ),
        documentation_only=True,
    ),
    ResponseHeader(
        name="Cache-Control",
        description="`no-store`: the file holds personal data.",
        documentation_only=True,
    ),
]
_CSV_DESCRIPTION = (
    "A CSV file (UTF-8, comma-separated, a header row, RFC 4180 quoting), streamed: "
    "the header row comes even when there are no rows."
)
_SAFETY = (
    "Spreadsheet-safe: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage "
    "return is written with a leading `'`; numbers (points, balances) are left as they are. "
    "The whole file is one consistent snapshot of the data."
)


def _download(content: AsyncIterator[bytes], kind: str) -> Stream:
    return Stream(
        content,
        media_type=service.CSV_MEDIA_TYPE,
        headers={
            "Content-Disposition": f"attachment; filename={service.file_name(kind, utc_now())}",
            "Cache-Control": "no-store",
        },
    )


class ExportController(Controller):
    """Customers and ledger entries as CSV files, streamed in constant memory."""

    path = "/api/v1/exports"
    security = BEARER_SECURITY
    tags = ["Exports"]

    @get(
        "/customers.csv",
        opt={"scope": "customers:read"},
        media_type=service.CSV_MEDIA_TYPE,
        summary="Every customer with every balance, as CSV",
        description=(
            "Columns: `" + ", ".join(service.CUSTOMER_COLUMNS) + "`. One row per customer, "
            "oldest first (`created_at`, then id). `customer_id` is the platform id; points "
            "are written as the API writes them; `tier` is the tier's name. Erased customers "
            "keep their row (so the balances add up) with their personal cells empty. " + _SAFETY
        ),
        response_description=_CSV_DESCRIPTION,
        response_headers=_HEADERS,
        responses=error_responses(),
    )
    async def customers_csv(self, caller: CurrentCaller) -> Stream:
        return _download(service.export_customers(caller.database, caller.merchant_id), "customers")

    @get(
        "/transactions.csv",
        opt={"scope": "transactions:read"},
        media_type=service.CSV_MEDIA_TYPE,
        summary="The ledger's entries, as CSV",
        description=(
            "Columns: `" + ", ".join(service.TRANSACTION_COLUMNS) + "`. One row per ledger "
            "entry, oldest first (`created_at`, then id). `customer_id` is the customer's "
            "platform id, as in the customers export (empty for erased customers); `type` is "
            "`credit` or `debit`; `points_balance` is the balance after the entry. `actor` is "
            "who made the entry (`user:<email>`, `api_key:<prefix>`, `system` or "
            "`import:<id>`; `api_key:unknown` for entries made before it was recorded). "
            "`since` (inclusive) and `until` (exclusive) take `YYYY-MM-DD` or an RFC 3339 "
            "timestamp; a date means the start of that day (UTC) for `since` and the end of "
            "that day for `until`, so "
            "`since=2026-01-01&until=2026-01-31` is all of January. Invalid values answer 422 "
            "`validation_error` before anything is sent. " + _SAFETY
        ),
        response_description=_CSV_DESCRIPTION,
        response_headers=_HEADERS,
        responses=error_responses(422),
    )
    async def transactions_csv(
        self,
        caller: CurrentCaller,
        since: str | None = Parameter(
            required=False,
            max_length=64,
            description="Entries created at or after this (`YYYY-MM-DD` or RFC 3339).",
        ),
        until: str | None = Parameter(
            required=False,
            max_length=64,
            description="Entries created before this (a date: until the end of that day).",
        ),
    ) -> Stream:
        within = service.period(since, until)
        return _download(
            service.export_transactions(caller.database, caller.merchant_id, within),
            "transactions",
        )
