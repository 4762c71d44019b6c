"""Customers (support too): the searchable list and one customer's page.

The list is ``GET /api/v1/customers``'s service (``customers.listing``): the same
search (platform id exactly; email, first or last name by prefix), status filter,
sorts and keyset cursors. Typing in the search box refreshes the results with htmx
(the results only, ``customers/_results.html``); without JavaScript the form is a
plain GET.

A customer's page is addressed by its internal UUID (an erased customer keeps it):
every balance, tier progress, status, profile, the activity log (newest first, with
each entry's actor), pending credits, rewards, and the forms of
``customer_forms`` (adjust, status; approve / cancel and use / revert for admins).
Another merchant's customer, or no customer at all, is the 404 page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from litestar import Response, get
from litestar.params import FromPath
from sqlalchemy.exc import NoResultFound
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty import cursors
from loyalty.admin.service import Staff
from loyalty.admin.web import (
    SUPPORT_TOO,
    AdminRequest,
    Form,
    current_user,
    database,
    form_from_error,
    is_htmx,
    parse_uuid,
    render,
)
from loyalty.customers import listing
from loyalty.customers import repository as customers_repository
from loyalty.customers.refs import ERASED, CustomerRef, customer_not_found
from loyalty.customers.schemas import Customer, CustomerPage
from loyalty.customers.service import to_customer
from loyalty.db.engine import Database
from loyalty.errors import LoyaltyError, NotFoundError
from loyalty.ledger import repository as ledger_repository
from loyalty.ledger import service as ledger_service
from loyalty.ledger.schemas import PendingCredit, Transaction
from loyalty.rewards import service as rewards_service
from loyalty.rewards.schemas import CustomerReward
from loyalty.tiers import service as tiers_service
from loyalty.tiers.service import Progress

LIST_PAGE_SIZE = 25
ACTIVITY_PAGE_SIZE = 20
PENDING_SHOWN_MAX = 100
LIST_FIELDS = ("search", "status", "sort")

STATUS_FILTERS = [
    ("", "All but erased"),
    ("active", "Active"),
    ("inactive", "Inactive"),
    ("excluded", "Excluded"),
    ("excluded_by_customer", "Excluded by the customer"),
    (ERASED, "Erased"),
]
SORTS = [
    ("-created_at", "Newest first"),
    ("created_at", "Oldest first"),
    ("-points_balance", "Highest balance"),
    ("points_balance", "Lowest balance"),
]
STATUS_LABELS = {
    "active": "Active",
    "inactive": "Inactive",
    "excluded": "Excluded",
    "excluded_by_customer": "Excluded by the customer",
    ERASED: "Erased",
}
# The statuses staff can set, with what each means.
STATUS_CHOICES = [
    ("active", "Active: earns and redeems"),
    ("inactive", "Inactive: redeems, does not earn"),
    ("excluded", "Excluded: neither earns nor redeems"),
    ("excluded_by_customer", "Excluded by the customer: opted out"),
]
TIER_BASIS_LABELS = {"amount_spent": "amount spent", "lifetime_points": "lifetime points"}


# --- how figures read ------------------------------------------------------------------


def points_label(value: float) -> str:
    """A points figure as people read it: ``1,250`` or ``1,250.50``."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{Decimal(repr(value)):,.2f}"


def signed_points(value: float) -> str:
    """A movement: ``+250``, or ``100`` after a real minus sign (U+2212)."""
    text = points_label(abs(value))
    return f"+{text}" if value > 0 else f"\N{MINUS SIGN}{text}"


def full_name(customer: Customer) -> str:
    return " ".join(part for part in (customer.first_name, customer.last_name) if part)


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def kind_label(kind: str) -> str:
    return kind.replace("_", " ")


def customer_path(customer_id: uuid.UUID | str) -> str:
    return f"/admin/customers/{customer_id}"


# --- the list ----------------------------------------------------------------------------


def _list_values(request: AdminRequest) -> dict[str, str]:
    params = request.query_params
    return {
        "search": params.get("search") or "",
        "status": params.get("status") or "",
        "sort": params.get("sort") or listing.SORT_DEFAULT,
    }


def _list_url(values: dict[str, str], **changes: str | None) -> str:
    """The list's address with ``values`` and ``changes`` (blank ones left out)."""
    merged: dict[str, str | None] = {**values, **changes}
    if merged.get("sort") == listing.SORT_DEFAULT:
        merged["sort"] = None
    query = urlencode({name: value for name, value in merged.items() if value})
    return "/admin/customers" + (f"?{query}" if query else "")


def _sort_links(values: dict[str, str]) -> dict[str, dict[str, Any]]:
    """For the Balance and Joined headers: the order shown and the link that flips it."""
    links: dict[str, dict[str, Any]] = {}
    current = values["sort"]
    for column, key in (("balance", "points_balance"), ("joined", "created_at")):
        descending, ascending = f"-{key}", key
        if current == descending:
            links[column] = {"aria": "descending", "next": ascending, "arrow": "↓"}
        elif current == ascending:
            links[column] = {"aria": "ascending", "next": descending, "arrow": "↑"}
        else:
            links[column] = {"aria": None, "next": descending, "arrow": ""}
        links[column]["url"] = _list_url(values, sort=links[column]["next"], cursor=None)
    return links


@get("/customers", opt=SUPPORT_TOO)
async def customers_page(request: AdminRequest) -> Response[str]:
    staff = current_user(request)
    values = _list_values(request)
    cursor = request.query_params.get("cursor") or None
    form = Form(values=values)
    page = CustomerPage(data=[], next_cursor=None)
    status_code = 200
    try:
        async with database(request).read() as connection:
            page = await listing.list_customers(
                connection,
                staff.merchant_id,
                search=values["search"],
                status=values["status"] or None,
                sort=values["sort"],
                cursor=cursor,
                limit=LIST_PAGE_SIZE,
            )
    except LoyaltyError as error:
        form = form_from_error(error, values, fields=LIST_FIELDS)
        if form.message and form.message.startswith("Cursor"):
            form.message = "That page of the list is out of date: start again from the first page."
        status_code = 422
    # htmx refreshes the results only (a history restore asks for the whole page).
    results_only = is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true"
    return render(
        request,
        "customers/_results.html" if results_only else "customers/list.html",
        status_code=status_code,
        form=form,
        customers=page.data,
        next_url=(
            _list_url(values, cursor=page.next_cursor) if page.next_cursor is not None else None
        ),
        first_url=_list_url(values) if cursor else None,
        sort_links=_sort_links(values),
        status_filters=STATUS_FILTERS,
        sorts=SORTS,
        searched=bool(values["search"].strip() or values["status"]),
        points=points_label,
        full_name=full_name,
        status_label=status_label,
        customer_path=customer_path,
    )


# --- one customer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierProgress:
    """How far the customer is from the next tier, on the programme's basis."""

    basis: str
    value: str
    needed: str
    percent: int


@dataclass
class CustomerView:
    """Everything the customer's page shows."""

    customer: Customer
    erased: bool
    progress: TierProgress | None
    transactions: list[Transaction]
    older_cursor: str | None
    pending: list[PendingCredit] = field(default_factory=list)
    rewards: list[CustomerReward] = field(default_factory=list)


def customer_ref(customer: Customer) -> CustomerRef:
    """How the API's services name this customer: by its platform id.

    (The services check a reference with ``customers.service.check_ref``, which takes
    a platform id or an email; an erased customer has neither and is read-only here.)
    """
    if customer.customer_id is None:
        raise customer_not_found(CustomerRef(internal_id=customer.id))
    return CustomerRef(customer_id=customer.customer_id)


def parse_customer_uuid(text: str) -> uuid.UUID:
    """The page's customer UUID; a malformed one is the 404 page."""
    customer_uuid = parse_uuid(text)
    if customer_uuid is None:
        raise NotFoundError("No such customer.")
    return customer_uuid


def _tier_progress(row: Any, progress: Progress | None) -> TierProgress | None:
    if progress is None or progress.next_tier is None or progress.amount_to_next_tier is None:
        return None
    total = progress.basis_value + progress.amount_to_next_tier
    percent = 100 if total <= 0 else int(progress.basis_value * 100 // total)
    return TierProgress(
        basis=TIER_BASIS_LABELS.get(row.tier_basis, str(row.tier_basis).replace("_", " ")),
        value=points_label(progress.basis_value),
        needed=points_label(progress.amount_to_next_tier),
        percent=max(0, min(percent, 100)),
    )


async def _customer_row(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_uuid: uuid.UUID
) -> Any:
    try:
        return await customers_repository.find_by_id(connection, merchant_id, customer_uuid)
    except NoResultFound:  # no such customer, or another merchant's
        raise customer_not_found(CustomerRef(internal_id=customer_uuid)) from None


async def find_customer(db: Database, merchant_id: uuid.UUID, customer_uuid: uuid.UUID) -> Customer:
    """The merchant's customer with this UUID (404 otherwise), without tier progress."""
    async with db.read() as connection:
        return to_customer(await _customer_row(connection, merchant_id, customer_uuid))


async def load_customer_view(
    db: Database, staff: Staff, customer_uuid: uuid.UUID, cursor: str | None
) -> CustomerView:
    merchant_id = staff.merchant_id
    before = ledger_service.decode_cursor(cursor) if cursor else None
    async with db.read() as connection:
        row = await _customer_row(connection, merchant_id, customer_uuid)
        progress = None
        if row.tier_basis is not None:
            progress = await tiers_service.progress(connection, merchant_id, row)
        customer = to_customer(row, progress)
        # By UUID: an erased customer's entries stay (anonymous) and show too.
        rows = await ledger_repository.list_entries(
            connection,
            merchant_id,
            customer_uuid,
            before_sequence=before,
            limit=ACTIVITY_PAGE_SIZE + 1,
        )
        transactions = [ledger_service.to_transaction(entry) for entry in rows]
        view = CustomerView(
            customer=customer,
            erased=customer.status == ERASED,
            progress=_tier_progress(row, progress),
            transactions=transactions[:ACTIVITY_PAGE_SIZE],
            older_cursor=(
                cursors.encode_cursor(transactions[ACTIVITY_PAGE_SIZE - 1].sequence)
                if len(transactions) > ACTIVITY_PAGE_SIZE
                else None
            ),
        )
        if not view.erased:
            pending = await ledger_service.list_pending(
                connection,
                merchant_id,
                customer_ref(customer),
                status="pending",
                limit=PENDING_SHOWN_MAX,
            )
            view.pending = pending.data
    if not view.erased:
        redeemable = await rewards_service.get_redeemable(db, merchant_id, customer_ref(customer))
        view.rewards = redeemable.customer_rewards
    return view


def adjust_form(values: dict[str, str] | None = None) -> Form:
    """The adjust form, with a fresh idempotency key (a new submission)."""
    defaults = {"apply_to_lifetime": "true"} if values is None else {}
    return Form(values={**defaults, **(values or {}), "idempotency_key": str(uuid.uuid4())})


def status_form(customer: Customer) -> Form:
    return Form(values={"status": customer.status, "reason": customer.status_reason or ""})


async def customer_page_response(
    request: AdminRequest,
    customer_uuid: uuid.UUID,
    *,
    adjust: Form | None = None,
    status: Form | None = None,
    alert: str | None = None,
    status_code: int = 200,
) -> Response[str]:
    """The customer's page; a form that failed comes back with its errors and values."""
    staff = current_user(request)
    # After a refused form (a POST) the page shows the newest entries.
    cursor = (request.query_params.get("cursor") or None) if request.method == "GET" else None
    view = await load_customer_view(database(request), staff, customer_uuid, cursor)
    path = customer_path(customer_uuid)
    return render(
        request,
        "customers/detail.html",
        status_code=status_code,
        view=view,
        customer=view.customer,
        adjust_form=adjust or adjust_form(),
        status_form=status or status_form(view.customer),
        status_choices=STATUS_CHOICES,
        can_manage=staff.role == "admin",
        path=path,
        older_url=f"{path}?{urlencode({'cursor': view.older_cursor})}#activity"
        if view.older_cursor
        else None,
        newest_url=f"{path}#activity" if cursor else None,
        alert=alert,
        new_key=lambda: str(uuid.uuid4()),
        points=points_label,
        signed=signed_points,
        full_name=full_name,
        status_label=status_label,
        kind_label=kind_label,
    )


@get("/customers/{customer_id:str}", opt=SUPPORT_TOO)
async def customer_page(request: AdminRequest, customer_id: FromPath[str]) -> Response[str]:
    return await customer_page_response(request, parse_customer_uuid(customer_id))


ROUTES = [customers_page, customer_page]
