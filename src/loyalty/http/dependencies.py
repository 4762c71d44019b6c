"""Named dependencies, declared once on the app: handlers ask for them by name.

Handlers take at most ``caller`` and ``customer_ref``, and ``customer_ref``
depends on ``caller``: Litestar resolves dependencies of one level
concurrently in a task group, which costs more per request than the
dependencies themselves, so each level holds exactly one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter

from loyalty.auth.schemas import Principal
from loyalty.customers.refs import CustomerRef
from loyalty.customers.schemas import EMAIL_PATTERN
from loyalty.db.engine import Database
from loyalty.http.auth import current_principal
from loyalty.ledger.writer import LedgerWriter

# The customer query parameters' limits (also checked by ``loyalty.http.fastpath``).
CUSTOMER_ID_CHARS_MAX = 255
CUSTOMER_EMAIL_CHARS_MAX = 254


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated API key and the services its request uses."""

    principal: Principal
    database: Database
    ledger_writer: LedgerWriter

    @property
    def merchant_id(self) -> uuid.UUID:
        return self.principal.merchant_id


def provide_caller(request: Request[Any, Any, Any]) -> Caller:
    state = request.app.state
    return Caller(current_principal(request), state.database, state.ledger_writer)


# Handler parameter types: ``caller: CurrentCaller``, ``customer_ref: CustomerRefQuery``.
CurrentCaller = NamedDependency[Caller]
CustomerRefQuery = NamedDependency[CustomerRef]


def provide_customer_ref(
    caller: CurrentCaller,  # only orders resolution after the caller (see the module note)
    customer_id: str | None = Parameter(
        description="The platform customer id, e.g. a Shopify customer id.",
        required=False,
        max_length=CUSTOMER_ID_CHARS_MAX,
    ),
    customer_email: str | None = Parameter(
        description="Alternative to customer_id: the customer's email (case-insensitive).",
        required=False,
        max_length=CUSTOMER_EMAIL_CHARS_MAX,
        pattern=EMAIL_PATTERN,
    ),
) -> CustomerRef:
    return CustomerRef(customer_id=customer_id, customer_email=customer_email)


DEPENDENCIES = {
    "caller": Provide(provide_caller, sync_to_thread=False),
    "customer_ref": Provide(provide_customer_ref, sync_to_thread=False),
}
