"""Named dependencies, declared once on the app: handlers ask for them by name."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter

from loyalty.auth.schemas import Principal
from loyalty.customers.service import CustomerRef
from loyalty.db.engine import Database
from loyalty.http.auth import current_principal
from loyalty.ledger.writer import LedgerWriter


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return current_principal(request)


def provide_database(state: State) -> Database:
    database: Database = state.database
    return database


def provide_ledger_writer(state: State) -> LedgerWriter:
    writer: LedgerWriter = state.ledger_writer
    return writer


def provide_customer_ref(
    customer_id: str | None = Parameter(
        description="The platform customer id, e.g. a Shopify customer id.",
        required=False,
        max_length=255,
    ),
    customer_email: str | None = Parameter(
        description="Alternative to customer_id: the customer's email (case-insensitive).",
        required=False,
        max_length=254,
    ),
) -> CustomerRef:
    return CustomerRef(customer_id=customer_id, customer_email=customer_email)


# Handler parameter types: ``principal: CurrentPrincipal`` and so on.
CurrentPrincipal = NamedDependency[Principal]
DatabaseDependency = NamedDependency[Database]
CustomerRefQuery = NamedDependency[CustomerRef]
LedgerWriterDependency = NamedDependency[LedgerWriter]

DEPENDENCIES = {
    "principal": Provide(provide_principal, sync_to_thread=False),
    "database": Provide(provide_database, sync_to_thread=False),
    "customer_ref": Provide(provide_customer_ref, sync_to_thread=False),
    "ledger_writer": Provide(provide_ledger_writer, sync_to_thread=False),
}
