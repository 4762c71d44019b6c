"""The ledger: every points movement goes through ``move_points``.

``move_points`` is the whole write path of a movement. It hands the movement
to the process's batching writer (``loyalty.ledger.writer``), which applies
it with other concurrent movements in one transaction and answers once that
transaction has committed. Validation that needs no database happens here,
before queueing; what needs the database (the customer, the programme's
precision, the balance, the idempotency key) happens in the batch.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import service as customers_service
from loyalty.customers.service import CustomerRef
from loyalty.db.types import utc_now
from loyalty.errors import ValidationFailedError
from loyalty.ledger import repository
from loyalty.ledger.batch import Movement, Outcome
from loyalty.ledger.schemas import CreateTransaction, Transaction, TransactionPage
from loyalty.ledger.writer import LedgerWriter
from loyalty.points import MAXIMUM_DECIMALS, PointsFormatError, format_points, parse_points
from loyalty.text import check_characters, clean_note, clean_text

PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 100


async def move_points(writer: LedgerWriter, movement: Movement) -> Outcome:
    """Apply one movement durably (or refuse it) and return the client's answer."""
    return await writer.submit(movement)


async def adjust_points(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    data: CreateTransaction,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """A merchant's manual credit or debit (seed 000)."""
    try:
        # The programme's own precision (0-2 decimals) is checked in the batch.
        points_minor = parse_points(data.points, MAXIMUM_DECIMALS)
    except PointsFormatError as error:
        raise ValidationFailedError.for_field("points", str(error)) from error
    if points_minor == 0:
        raise ValidationFailedError.for_field("points", "must not be zero")
    check_characters(data.description, "description")
    check_characters(data.internal_note, "internal_note")
    is_credit = points_minor > 0
    if data.expires_at is not None:
        if not is_credit:
            raise ValidationFailedError.for_field("expires_at", "only credits can expire")
        if data.expires_at <= utc_now():
            raise ValidationFailedError.for_field("expires_at", "must be in the future")
    movement = Movement(
        merchant_id=merchant_id,
        customer=customers_service.check_ref(ref),
        points_minor=points_minor,
        kind="adjustment",
        description=clean_text(data.description),
        internal_note=clean_note(data.internal_note),
        visible_to_customer=data.visible_to_customer,
        apply_to_lifetime=is_credit if data.apply_to_lifetime is None else data.apply_to_lifetime,
        expires_at=data.expires_at,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )
    return await move_points(writer, movement)


def to_transaction(row: Any) -> Transaction:
    return Transaction(
        transaction_id=row.id,
        customer_id=row.customer_id,
        points=format_points(row.points_minor),
        type="credit" if row.points_minor > 0 else "debit",
        kind=row.kind,
        description=row.description,
        internal_note=row.internal_note,
        visible_to_customer=row.visible_to_customer,
        apply_to_lifetime=row.apply_to_lifetime,
        points_balance=format_points(row.balance_after_minor),
        sequence=row.sequence,
        expires_at=row.expires_at,
        created_at=row.created_at,
    )


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"s:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        kind, _, number = text.partition(":")
        sequence = int(number)
        if kind != "s" or sequence < 1:
            raise ValueError(cursor)
    except (ValueError, binascii.Error, UnicodeError) as error:
        raise ValidationFailedError.for_field(
            "cursor", "is not a cursor this API returned", location="query"
        ) from error
    return sequence


def check_limit(limit: int) -> int:
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ValidationFailedError.for_field(
            "limit", f"must be between 1 and {PAGE_LIMIT_MAX}", location="query"
        )
    return limit


async def list_transactions(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    *,
    limit: int = PAGE_LIMIT_DEFAULT,
    cursor: str | None = None,
) -> TransactionPage:
    """The activity log, newest first."""
    limit = check_limit(limit)
    before = decode_cursor(cursor) if cursor else None
    customer_id = await customers_service.resolve_customer_id(connection, merchant_id, ref)
    rows = await repository.list_entries(
        connection, merchant_id, customer_id, before_sequence=before, limit=limit + 1
    )
    page = [to_transaction(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].sequence) if len(rows) > limit else None
    return TransactionPage(data=page, next_cursor=next_cursor)
