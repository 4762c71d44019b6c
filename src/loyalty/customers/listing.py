"""The merchant's customers, listed and searched (``GET /api/v1/customers``).

Parameters are checked here (each bad one is a 422 naming it); the SQL, which
reads index ranges only and stops after one page, is in
``loyalty.customers.list_repository``. Cursors are keyset positions tied to
their sort: the last row's (created_at, id) or (points balance, id).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, get_args

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.cursors import cursor_value
from loyalty.customers import list_repository
from loyalty.customers.list_repository import After, Order, Search
from loyalty.customers.refs import ERASED
from loyalty.customers.schemas import Customer, CustomerPage, CustomerStatus
from loyalty.customers.service import to_customer
from loyalty.errors import ValidationFailedError
from loyalty.ledger.service import PAGE_LIMIT_DEFAULT, check_limit

STATUSES: Final = (*get_args(CustomerStatus), ERASED)
SORTS: Final = ("-created_at", "created_at", "-points_balance", "points_balance")
SORT_DEFAULT: Final = "-created_at"
SEARCH_CHARS_MAX: Final = 255

# Each sort's order and the kind written in its cursors (a cursor of one sort
# is refused by another).
_ORDERS: Final = {
    "-created_at": (Order(by_balance=False, descending=True), "cd"),
    "created_at": (Order(by_balance=False, descending=False), "ca"),
    "-points_balance": (Order(by_balance=True, descending=True), "bd"),
    "points_balance": (Order(by_balance=True, descending=False), "ba"),
}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_UNICODE_MAX = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The end of the strings that start with ``prefix`` in binary (code point)
    order: ``prefix <= s < prefix_end`` exactly when ``s`` starts with
    ``prefix``. It is ``prefix`` with its last character incremented (a last
    character that is the highest code point is dropped and the one before
    incremented); None when every character is the highest (no upper bound)."""
    characters = list(prefix)
    while characters:
        code = ord(characters.pop()) + 1
        if code in _SURROGATES:  # not characters: UTF-8 cannot hold them
            code = _SURROGATES.stop
        if code <= _UNICODE_MAX:
            return "".join(characters) + chr(code)
    return None


def parse_search(text: str | None) -> Search | None:
    """The search as the query compares it; None when blank (no search)."""
    term = (text or "").strip()
    if not term:
        return None
    if len(term) > SEARCH_CHARS_MAX:
        raise _invalid("search", f"must be at most {SEARCH_CHARS_MAX} characters")
    if _CONTROL_CHARACTERS.search(term) or any(ord(char) in _SURROGATES for char in term):
        raise _invalid("search", "must not contain control characters")
    # Emails are stored lower-cased and the name search columns are the names
    # lower-cased by Python: the same folding here makes the match case-insensitive.
    prefix = term.lower()
    return Search(exact=term, prefix=prefix, prefix_end=prefix_end(prefix))


def parse_status(status: str | None) -> str | None:
    if status is None or status in STATUSES:
        return status
    raise _invalid("status", f"must be one of {', '.join(STATUSES)}")


def parse_tier_id(tier_id: str | uuid.UUID | None) -> uuid.UUID | None:
    if tier_id is None or isinstance(tier_id, uuid.UUID):
        return tier_id
    try:
        return uuid.UUID(tier_id)
    except ValueError:
        raise _invalid("tier_id", "must be a tier's id (a UUID)") from None


def parse_sort(sort: str | None) -> str:
    if sort is None:
        return SORT_DEFAULT
    if sort not in _ORDERS:
        raise _invalid("sort", f"must be one of {', '.join(SORTS)}")
    return sort


def _invalid(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError.for_field(field, message, location="query")


def _created_at(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(value)
    return moment


def _balance(value: str) -> int:
    balance = int(value)
    if balance < 0:
        raise ValueError(value)
    return balance


def _position(parse_key: Callable[[str], Any]) -> Callable[[str], After]:
    def parse(value: str) -> After:
        key, separator, customer_id = value.partition("|")
        if not separator:
            raise ValueError(value)
        return parse_key(key), uuid.UUID(customer_id)

    return parse


_PARSE_POSITION: Final = {False: _position(_created_at), True: _position(_balance)}


def decode_cursor(cursor: str, sort: str) -> After:
    """The position a cursor of ``sort`` holds (422 naming ``cursor`` otherwise)."""
    order, kind = _ORDERS[sort]
    parse = _PARSE_POSITION[order.by_balance]
    return parse(cursor_value(cursor, kind, parse))


def encode_cursor(row: Any, sort: str) -> str:
    """The cursor after ``row`` (a row of the page, with its sort key)."""
    order, kind = _ORDERS[sort]
    key = row.points_balance_minor if order.by_balance else row.created_at.isoformat()
    text = f"{kind}:{key}|{row.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def list_customers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    search: str | None = None,
    status: str | None = None,
    tier_id: str | uuid.UUID | None = None,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = PAGE_LIMIT_DEFAULT,
) -> CustomerPage:
    """One page of the merchant's customers (erased ones only when ``status`` is
    ``erased``), newest first by default."""
    limit = check_limit(limit)
    matching = parse_search(search)
    status = parse_status(status)
    tier = parse_tier_id(tier_id)
    sort = parse_sort(sort)
    after = decode_cursor(cursor, sort) if cursor else None
    rows = await list_repository.list_customers(
        connection,
        merchant_id,
        search=matching,
        status=status,
        tier_id=tier,
        order=_ORDERS[sort][0],
        after=after,
        limit=limit + 1,
    )
    page: list[Customer] = [to_customer(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1], sort) if len(rows) > limit else None
    return CustomerPage(data=page, next_cursor=next_cursor)
