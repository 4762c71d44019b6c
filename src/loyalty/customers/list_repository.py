"""SQL of the customer list and search: index range scans, keyset pagination.

A page is found first, as the keys of its customers only, then its rows are
read by primary key (with balances, tier and programme settings). Finding
the page reads index ranges and stops after one page (never ``OFFSET``, never
a sort of the merchant's whole customer base):

- newest or oldest first: ``ix_customers_created_at`` (merchant, created_at,
  id), or ``ix_customers_status_created_at`` with a status, walked in order;
- by balance: ``ix_customer_balances_points_balance`` (merchant, balance,
  customer), walked in order;
- the search, one of two ways. A term matching few customers: their keys are
  read from one index range per way of matching (platform id, email prefix,
  first-name prefix, last-name prefix) and sorted. A term matching many (one
  letter, a common name): the sort's own index is walked in order, each
  customer tested, until a page of matches is found.

A prefix is a range ``[prefix, prefix_end)`` in binary order: ``COLLATE "C"``
on Postgres (the name search columns have it; the email has an index of its
own with it), SQLite's default comparison everywhere.

Which way is cheaper depends on how many customers the term matches, which
neither database estimates well: SQLite has no statistics (nothing runs
``ANALYZE``) and takes every merchant to be small; Postgres estimates a
narrow prefix range inside one histogram bucket poorly and has no statistics
for the email in the "C" collation. So the matches are counted first, in the
search's own indexes, reading at most ``SEARCH_FIRST_MATCHES_MAX`` entries of
each, and the query is written so that each database can only take the way
chosen (``search_first``). Other filters are left to the planner: a status or
tier filter is walked along the sort's index on SQLite; Postgres, which has
statistics on them, may read the filter's index and sort instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    collate,
    false,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from loyalty.customers.refs import ERASED
from loyalty.customers.repository import CUSTOMER_COLUMNS
from loyalty.db.tables import customer_balances, customers, program_settings, tiers

# A search matching fewer customers than this reads its matches first; one
# matching more walks the sort's index, testing each customer it passes. Per
# (database, balance sort): measured at a million customers, the two ways
# cost the same near these counts (about 5 ms newest first, 20-30 ms by
# balance, where each customer walked past is also looked up by key).
SEARCH_FIRST_MATCHES_MAX = {
    ("sqlite", False): 2000,
    ("sqlite", True): 3000,
    ("postgresql", False): 1000,
    ("postgresql", True): 3500,
}

_BALANCES_OF_CUSTOMER = (customer_balances.c.merchant_id == customers.c.merchant_id) & (
    customer_balances.c.customer_id == customers.c.id
)
# The columns ``customers.service.to_customer`` reads, as for one customer.
_ROWS = select(*CUSTOMER_COLUMNS)


@dataclass(frozen=True, slots=True)
class Search:
    """``exact`` is compared with the platform id; ``[prefix, prefix_end)`` with
    the email and the lower-cased names (``prefix_end`` None: no upper bound)."""

    exact: str
    prefix: str
    prefix_end: str | None


@dataclass(frozen=True, slots=True)
class Order:
    """``by_balance``: (points balance, customer id), else (created_at, id)."""

    by_balance: bool
    descending: bool


# The sort key of the last row of the previous page: (created_at or balance, id).
After = tuple[datetime | int, uuid.UUID]


def _in_range(column: Any, search: Search) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = column >= search.prefix
    if search.prefix_end is not None:
        condition = and_(condition, column < search.prefix_end)
    return condition


def _branches(search: Search, *, sqlite: bool) -> list[ColumnElement[bool]]:
    """The ways a customer matches, each one index range after the merchant."""
    # Postgres: the expression of ix_customers_email_c, so that index serves the range.
    email = customers.c.email if sqlite else collate(customers.c.email, "C")
    return [
        customers.c.external_id == search.exact,
        _in_range(email, search),
        _in_range(customers.c.first_name_search, search),
        _in_range(customers.c.last_name_search, search),
    ]


def _hidden(column: Any) -> Any:
    """``+column``: the same value, which SQLite's planner cannot look up in an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _keys(
    dialect: str,
    merchant_id: uuid.UUID,
    *,
    search: Search | None,
    status: str | None,
    tier_id: uuid.UUID | None,
    order: Order,
    after: After | None,
    limit: int,
    search_first: bool,
) -> Select[Any]:
    """The (merchant_id, id) of the page's customers, in the page's order."""
    sqlite = dialect == "sqlite"
    merchant = customers.c.merchant_id
    wanted: list[ColumnElement[bool]] = [
        customers.c.status != ERASED if status is None else customers.c.status == status
    ]
    if search is not None:
        branches = _branches(search, sqlite=sqlite)
        if not search_first:
            # A test of each customer walked past, which no index can serve: the
            # planners then walk the sort's index (Postgres takes it to match half).
            wanted.append(case((or_(*branches), true()), else_=false()))
        elif sqlite:
            # The union of the index ranges (MULTI-INDEX OR) is made SQLite's only
            # indexed plan: each branch carries the merchant, and the merchant's
            # own condition is hidden from the planner.
            merchant = _hidden(merchant)
            wanted.append(or_(*[and_(customers.c.merchant_id == merchant_id, b) for b in branches]))
        else:
            wanted.append(or_(*branches))
    # The customers: the table, or (Postgres, search first) the search's matches,
    # gathered by one bitmap over its index ranges before the page is sorted out.
    source: Any = customers
    conditions = [merchant == merchant_id, *wanted]
    if search_first and not sqlite:
        source = (
            select(customers.c.merchant_id, customers.c.id, customers.c.created_at)
            .where(*conditions)
            .cte("matches")
            .prefix_with("MATERIALIZED")
        )
        conditions = []
    keys = select(source.c.merchant_id, source.c.id).select_from(source).where(*conditions)
    if order.by_balance or tier_id is not None:
        keys = keys.join(
            customer_balances,
            (customer_balances.c.merchant_id == source.c.merchant_id)
            & (customer_balances.c.customer_id == source.c.id),
        )
    if tier_id is not None:
        keys = keys.where(customer_balances.c.tier_id == tier_id)
    key = _sort_key(order, source)
    if after is not None:
        position = tuple_(*key)
        bound = tuple_(*after, types=[column.type for column in key])
        keys = keys.where(position < bound if order.descending else position > bound)
    return keys.order_by(*_ordering(key, order)).limit(limit)


def _sort_key(order: Order, source: Any) -> tuple[Any, Any]:
    if order.by_balance:
        return customer_balances.c.points_balance_minor, customer_balances.c.customer_id
    return source.c.created_at, source.c.id


def _ordering(key: tuple[Any, Any], order: Order) -> list[Any]:
    return [column.desc() if order.descending else column.asc() for column in key]


def page_statement(
    dialect: str,
    merchant_id: uuid.UUID,
    *,
    search: Search | None,
    status: str | None,
    tier_id: uuid.UUID | None,
    order: Order,
    after: After | None,
    limit: int,
    search_first: bool = False,
) -> Select[Any]:
    """The query of one page (``dialect``: the connection's, ``postgresql`` or
    ``sqlite``; ``search_first``: read the search's matches first, see the
    module's note)."""
    page = _keys(
        dialect,
        merchant_id,
        search=search,
        status=status,
        tier_id=tier_id,
        order=order,
        after=after,
        limit=limit,
        search_first=search_first and search is not None,
    ).subquery("page")
    # The page's rows by primary key. No condition on the merchant here: the page
    # has it, and a constant would let SQLite start from another index instead.
    return (
        _ROWS.select_from(page)
        .join(
            customers,
            (customers.c.merchant_id == page.c.merchant_id) & (customers.c.id == page.c.id),
        )
        .join(customer_balances, _BALANCES_OF_CUSTOMER)
        .join(program_settings, program_settings.c.merchant_id == customers.c.merchant_id)
        .outerjoin(
            tiers,
            (tiers.c.merchant_id == customer_balances.c.merchant_id)
            & (tiers.c.id == customer_balances.c.tier_id),
        )
        .order_by(*_ordering(_sort_key(order, customers), order))
    )


async def search_is_sparse(
    connection: AsyncConnection, merchant_id: uuid.UUID, search: Search, order: Order
) -> bool:
    """Whether fewer than SEARCH_FIRST_MATCHES_MAX customers match (counted in
    the search's indexes, reading at most that many entries of each)."""
    dialect = connection.dialect.name
    most = SEARCH_FIRST_MATCHES_MAX[dialect, order.by_balance]
    conditions = [
        and_(customers.c.merchant_id == merchant_id, branch)
        for branch in _branches(search, sqlite=dialect == "sqlite")
    ]
    counts = [
        select(func.count())
        .select_from(
            select(literal(1)).select_from(customers).where(condition).limit(most).subquery()
        )
        .scalar_subquery()
        for condition in conditions
    ]
    total = (await connection.execute(select(sum(counts[1:], counts[0])))).scalar_one()
    return int(total) < most


async def list_customers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    search: Search | None,
    status: str | None,
    tier_id: uuid.UUID | None,
    order: Order,
    after: After | None,
    limit: int,
) -> Sequence[Any]:
    """One page of the merchant's customers with their balances (``limit`` rows at most).

    Erased customers are left out unless ``status`` asks for them.
    """
    dialect = connection.dialect.name
    search_first = search is not None and await search_is_sparse(
        connection, merchant_id, search, order
    )
    if dialect != "sqlite" and (search is not None or status is not None or tier_id is not None):
        # A prepared statement may otherwise get a generic plan, made without the
        # values: the same plan for a term matching one customer and one matching
        # half of them. (For the rest of this read transaction only.)
        await connection.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    statement = page_statement(
        dialect,
        merchant_id,
        search=search,
        status=status,
        tier_id=tier_id,
        order=order,
        after=after,
        limit=limit,
        search_first=search_first,
    )
    rows: Sequence[Any] = (await connection.execute(statement)).all()
    return rows
