"""CSV exports: customers with every balance, and the ledger's entries.

Rows are read in chunks of ``CHUNK_ROWS`` (keyset pagination, see the
repository) inside one read-only snapshot, and each chunk is written with the
``csv`` module into a buffer of its own and handed on as UTF-8 bytes, so
memory stays the same whatever the number of rows. The header row always
comes first, even when there are no rows.

Spreadsheet safety: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return is written with a leading ``'`` so that no spreadsheet
runs it as a formula. Numbers (points, balances, sequences) are left as they
are: ``-50`` is a debit, not a formula.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import ERASED
from loyalty.db.engine import Database
from loyalty.errors import ValidationFailedError
from loyalty.exports import repository
from loyalty.exports.repository import Keyset
from loyalty.merchants import service as merchants_service
from loyalty.moments import parse_moment
from loyalty.points import format_points

# Rows read per query and written per chunk of output.
CHUNK_ROWS = 5_000

# Sent as ``text/csv; charset=utf-8`` (the framework adds the charset of text types).
CSV_MEDIA_TYPE = "text/csv"

CUSTOMER_COLUMNS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "date_of_birth",
    "status",
    "points_balance",
    "pending_points",
    "lifetime_points",
    "points_spent",
    "points_expired",
    "store_credit_balance",
    "tier",
    "total_spent",
    "created_at",
)

TRANSACTION_COLUMNS = (
    "transaction_id",
    "customer_id",
    "points",
    "type",
    "kind",
    "description",
    "internal_note",
    "apply_to_lifetime",
    "points_balance",
    "sequence",
    "expires_at",
    "created_at",
    "actor",
)

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_BOUND_MESSAGE = "must be a date (YYYY-MM-DD) or an RFC 3339 timestamp with its offset"


@dataclass(frozen=True, slots=True)
class Period:
    """Entries created at or after ``since`` and before ``until`` (either may be open)."""

    since: datetime | None = None
    until: datetime | None = None


# --- cells ---------------------------------------------------------------


def text_cell(value: str | None) -> str:
    """A text cell, made safe for spreadsheets (a leading ``'`` before a formula start)."""
    if not value:
        return ""
    if value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def timestamp_cell(value: datetime | None) -> str:
    """RFC 3339 in UTC, as the API writes it (``2026-12-02T05:00:00Z``); the
    database layer hands every timestamp over in UTC."""
    if value is None:
        return ""
    return value.isoformat().replace("+00:00", "Z")


def date_cell(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def points_cell(minor: int | None) -> str:
    """Points as the API writes them: whole points as integers, else up to 2 decimals."""
    return str(format_points(minor or 0))


def customer_row(row: Any) -> list[str]:
    """One customer's cells, from ``repository.customer_chunk``'s columns."""
    (
        _id,
        external_id,
        email,
        first_name,
        last_name,
        date_of_birth,
        status,
        total_spent_minor,
        created_at,
        points_balance_minor,
        pending_points_minor,
        lifetime_points_minor,
        points_spent_minor,
        points_expired_minor,
        store_credit_balance_minor,
        tier_name,
    ) = row
    if status == ERASED:
        personal = ["", "", "", "", ""]
    else:
        personal = [
            text_cell(external_id),
            text_cell(email),
            text_cell(first_name),
            text_cell(last_name),
            date_cell(date_of_birth),
        ]
    return [
        *personal,
        status,
        points_cell(points_balance_minor),
        points_cell(pending_points_minor),
        points_cell(lifetime_points_minor),
        points_cell(points_spent_minor),
        points_cell(points_expired_minor),
        points_cell(store_credit_balance_minor),
        text_cell(tier_name),
        points_cell(total_spent_minor),
        timestamp_cell(created_at),
    ]


def transaction_row(row: Any) -> list[str]:
    """One ledger entry's cells, from ``repository.entry_chunk``'s columns."""
    (
        entry_id,
        points_minor,
        kind,
        description,
        internal_note,
        apply_to_lifetime,
        balance_after_minor,
        sequence,
        expires_at,
        created_at,
        external_id,
        status,
        actor,
    ) = row
    return [
        str(entry_id),
        "" if status == ERASED else text_cell(external_id),
        points_cell(points_minor),
        "credit" if points_minor > 0 else "debit",
        text_cell(kind),
        text_cell(description),
        text_cell(internal_note),
        "true" if apply_to_lifetime else "false",
        points_cell(balance_after_minor),
        str(sequence),
        timestamp_cell(expires_at),
        timestamp_cell(created_at),
        text_cell(actor),
    ]


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows as CSV (RFC 4180: quoted when needed, CRLF line ends) in UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


# --- the period of a transactions export ---------------------------------


def _parse_bound(value: str, field: str, location: str, *, end: bool) -> datetime:
    try:
        moment = parse_moment(value.strip())
        if isinstance(moment, datetime):
            return moment
        day = datetime.combine(moment, time(), UTC)
        # A date: from the start of that day, or until the end of it.
        return day + timedelta(days=1) if end else day
    except (ValueError, OverflowError) as error:
        raise ValidationFailedError.for_field(field, _BOUND_MESSAGE, location) from error


def period(
    since: str | None,
    until: str | None,
    *,
    location: str = "query",
    names: tuple[str, str] = ("since", "until"),
) -> Period:
    """The period of ``since``/``until`` as sent (``YYYY-MM-DD`` or RFC 3339).

    ``since`` is inclusive, ``until`` exclusive; a date means the start of that
    day (UTC) for ``since`` and the end of that day for ``until`` (the start of
    the next one), so ``since=2026-01-01&until=2026-01-31`` is all of January.
    """
    start = None if since is None else _parse_bound(since, names[0], location, end=False)
    end = None if until is None else _parse_bound(until, names[1], location, end=True)
    if start is not None and end is not None and end <= start:
        raise ValidationFailedError.for_field(names[1], f"must be after {names[0]}", location)
    return Period(start, end)


# --- the exports ------------------------------------------------------------


async def check_merchant(database: Database, merchant_id: uuid.UUID) -> None:
    """Raise ``merchant_not_found`` unless the merchant exists."""
    async with database.read() as connection:
        await merchants_service.get_merchant(connection, merchant_id)


async def count_customers(database: Database, merchant_id: uuid.UUID) -> int:
    """How many rows a customers export has now (for a progress bar)."""
    async with database.read() as connection:
        return await repository.count_customers(connection, merchant_id)


async def count_transactions(
    database: Database, merchant_id: uuid.UUID, within: Period | None = None
) -> int:
    """How many rows a transactions export of ``within`` has now (for a progress bar)."""
    within = within or Period()
    async with database.read() as connection:
        return await repository.count_entries(connection, merchant_id, within.since, within.until)


async def _stream(
    database: Database,
    columns: Sequence[str],
    fetch: Callable[[AsyncConnection, Keyset | None, int], Awaitable[Sequence[Any]]],
    render: Callable[[Any], list[str]],
    on_rows: Callable[[int], None] | None,
) -> AsyncGenerator[bytes, None]:
    yield encode_rows([columns])
    async with repository.snapshot(database) as connection:
        after: Keyset | None = None
        while True:
            chunk_rows = CHUNK_ROWS
            rows = await fetch(connection, after, chunk_rows)
            if rows:
                yield encode_rows(map(render, rows))
                if on_rows is not None:
                    on_rows(len(rows))
            if len(rows) < chunk_rows:
                return
            last = rows[-1]
            after = (last.created_at, last.id)


def export_customers(
    database: Database,
    merchant_id: uuid.UUID,
    on_rows: Callable[[int], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The merchant's customers as CSV (``CUSTOMER_COLUMNS``), oldest first, in
    UTF-8 pieces: the header row, then one piece per chunk (``on_rows`` is told
    each chunk's number of rows).

    ``customer_id`` is the platform id; erased customers keep their row (so
    the balances add up) with their personal cells empty.
    """

    async def fetch(connection: AsyncConnection, after: Keyset | None, limit: int) -> Any:
        return await repository.customer_chunk(connection, merchant_id, after, limit)

    return _stream(database, CUSTOMER_COLUMNS, fetch, customer_row, on_rows)


def export_transactions(
    database: Database,
    merchant_id: uuid.UUID,
    within: Period | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The merchant's ledger entries as CSV (``TRANSACTION_COLUMNS``), oldest first,
    those of ``within`` only, in pieces as ``export_customers``. ``customer_id`` is
    the customer's platform id (as in the customers export; empty for erased
    customers)."""
    within = within or Period()
    since, until = within.since, within.until

    async def fetch(connection: AsyncConnection, after: Keyset | None, limit: int) -> Any:
        return await repository.entry_chunk(connection, merchant_id, since, until, after, limit)

    return _stream(database, TRANSACTION_COLUMNS, fetch, transaction_row, on_rows)


def file_name(kind: str, now: datetime) -> str:
    """The download's file name: ``customers-2026-12-02.csv``."""
    return f"{kind}-{now.astimezone(UTC).date().isoformat()}.csv"
