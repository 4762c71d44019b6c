"""The ledger: every points movement goes through ``move_points``.

``move_points`` is the whole write path of a movement. It hands the movement
to the process's batching writer (``loyalty.ledger.writer``), which applies
it with other concurrent movements in one transaction and answers once that
transaction has committed. Validation that needs no database happens here,
before queueing; what needs the database (the customer, the programme's
precision, the balance, the idempotency key) happens in the batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.cursors import cursor_value, encode_cursor
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef
from loyalty.db.types import utc_now
from loyalty.errors import ValidationFailedError
from loyalty.ledger import repository
from loyalty.ledger.engine.protocol import Movement, Operation, Outcome
from loyalty.ledger.engine.views import pending_view
from loyalty.ledger.operations.actions import RewardAction
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.holds import Cancel, Hold, PendingCreditNotFoundError, Release
from loyalty.ledger.operations.maintenance import Maintain
from loyalty.ledger.operations.transfers import TransferPoints
from loyalty.ledger.schemas import (
    CreateTransaction,
    CreateTransfer,
    PendingCreditPage,
    Transaction,
    TransactionPage,
)
from loyalty.ledger.writer import LedgerWriter
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_field
from loyalty.text import (
    DESCRIPTION_CHARS_MAX,
    INTERNAL_NOTE_CHARS_MAX,
    check_characters,
    check_length,
    clean_note,
    clean_text,
)

PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 100
PENDING_DAYS_MAX = 3650


async def move_points(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    operation: Operation,
    *,
    idempotency_key: str | None = None,
    request_fingerprint: str = "",
) -> Outcome:
    """Apply one operation durably (or refuse it) and return the client's answer."""
    return await writer.submit(
        Movement(merchant_id, operation, idempotency_key, request_fingerprint)
    )


async def adjust_points(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    data: CreateTransaction,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
    description_chars_max: int = DESCRIPTION_CHARS_MAX,
) -> Outcome:
    """A merchant's manual credit or debit (seed 000). ``description_chars_max``: 255,
    or 500 for Appstle's notes (its document allows them)."""
    # The programme's own precision (0-2 decimals) is checked in the batch.
    points_minor = parse_field(data.points, MAXIMUM_DECIMALS, "points")
    if points_minor == 0:
        raise ValidationFailedError.for_field("points", "must not be zero")
    check_characters(data.description, "description")
    check_characters(data.internal_note, "internal_note")
    # (The native body is checked when decoded; adapters build it themselves.)
    check_length(data.description, "description", description_chars_max)
    check_length(data.internal_note, "internal_note", INTERNAL_NOTE_CHARS_MAX)
    is_credit = points_minor > 0
    if data.expires_at is not None:
        if not is_credit:
            raise ValidationFailedError.for_field("expires_at", "only credits can expire")
        if data.expires_at <= utc_now():
            raise ValidationFailedError.for_field("expires_at", "must be in the future")
    available_at = _available_at(data, is_credit)
    adjust = Adjust(
        customer=customers_service.check_ref(ref),
        points_minor=points_minor,
        kind="adjustment",
        description=clean_text(data.description),
        internal_note=clean_note(data.internal_note),
        visible_to_customer=data.visible_to_customer,
        apply_to_lifetime=is_credit if data.apply_to_lifetime is None else data.apply_to_lifetime,
        expires_at=data.expires_at,
    )
    operation: Operation = adjust if available_at is None else Hold(adjust, available_at)
    return await move_points(
        writer,
        merchant_id,
        operation,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


def _available_at(data: CreateTransaction, is_credit: bool) -> datetime | None:
    """A credit held as pending (``pending_days`` or ``available_at``), else None."""
    if data.pending_days is None and data.available_at is None:
        return None
    field = "pending_days" if data.pending_days is not None else "available_at"
    if data.pending_days is not None and data.available_at is not None:
        raise ValidationFailedError.for_field(
            "available_at", "send either pending_days or available_at, not both"
        )
    if not is_credit:
        raise ValidationFailedError.for_field(field, "only credits can be held as pending")
    now = utc_now()
    if data.pending_days is not None:
        available_at = now + timedelta(days=data.pending_days)
    else:
        assert data.available_at is not None
        available_at = data.available_at
        if available_at <= now:
            raise ValidationFailedError.for_field("available_at", "must be in the future")
        if available_at > now + timedelta(days=PENDING_DAYS_MAX):
            raise ValidationFailedError.for_field(
                "available_at", f"must be within {PENDING_DAYS_MAX} days"
            )
    if data.expires_at is not None and data.expires_at <= available_at:
        raise ValidationFailedError.for_field(
            "expires_at", "must be after the points become available"
        )
    return available_at


async def release_pending(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    pending_id: uuid.UUID | None,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Approve pending credits early: one, or all of the customer's."""
    return await _pending_operation(
        writer,
        merchant_id,
        Release(customers_service.check_ref(ref), pending_id),
        idempotency_key,
        request_fingerprint,
    )


async def cancel_pending(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    pending_id: uuid.UUID,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    return await _pending_operation(
        writer,
        merchant_id,
        Cancel(customers_service.check_ref(ref), pending_id),
        idempotency_key,
        request_fingerprint,
    )


async def _pending_operation(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    operation: Release | Cancel,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    return await move_points(
        writer,
        merchant_id,
        operation,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


async def maintain_customer(
    writer: LedgerWriter, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> Outcome:
    """The scheduler's pass over one customer (by UUID): expiry, due holds, tier."""
    return await move_points(writer, merchant_id, Maintain(CustomerRef(internal_id=customer_id)))


async def list_pending(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    *,
    status: str | None,
    limit: int = PAGE_LIMIT_DEFAULT,
    cursor: str | None = None,
) -> PendingCreditPage:
    """The customer's pending credits (by default those still pending), newest first."""
    limit = check_limit(limit)
    before = uuid.UUID(cursor_value(cursor, "p", uuid.UUID)) if cursor else None
    customer_id = await customers_service.resolve_customer_id(connection, merchant_id, ref)
    rows = await repository.list_pending(
        connection, merchant_id, customer_id, status=status, before_id=before, limit=limit + 1
    )
    page = [pending_view(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id, kind="p") if len(rows) > limit else None
    return PendingCreditPage(data=page, next_cursor=next_cursor)


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
        earn_rule_id=row.earn_rule_id,
        actor=row.actor,
    )


def _sequence(value: str) -> int:
    sequence = int(value)
    if sequence < 1:
        raise ValueError(value)
    return sequence


def decode_cursor(cursor: str) -> int:
    return int(cursor_value(cursor, "s", _sequence))


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


@dataclass(frozen=True, slots=True)
class PendingOwner:
    pending_id: uuid.UUID
    ref: CustomerRef


async def pending_owner(
    connection: AsyncConnection, merchant_id: uuid.UUID, pending_id: str
) -> PendingOwner:
    """The customer a pending credit belongs to (the writer then decides under its lock)."""
    try:
        wanted = uuid.UUID(pending_id)
    except ValueError:
        wanted = None
    external_id = (
        None if wanted is None else await repository.pending_owner(connection, merchant_id, wanted)
    )
    if wanted is None or external_id is None:
        raise PendingCreditNotFoundError(f"No pending credit {pending_id!r}.", {"id": pending_id})
    return PendingOwner(wanted, CustomerRef(customer_id=external_id))


async def reward_action(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    action: str,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Reward a customer action per its earn rule (or say why not)."""
    return await move_points(
        writer,
        merchant_id,
        RewardAction(customers_service.check_ref(ref), action),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


def _body_ref(customer_id: str | None, email: str | None, side: str) -> CustomerRef:
    """One side of a transfer: exactly one of ``<side>_customer_id`` / ``_email``."""
    if (customer_id is None) == (email is None):
        raise ValidationFailedError.for_field(
            f"{side}_customer_id",
            f"give exactly one of {side}_customer_id or {side}_customer_email",
        )
    if customer_id is not None:
        return CustomerRef(
            customer_id=customers_service.normalise_external_id(customer_id, f"{side}_customer_id")
        )
    assert email is not None
    return CustomerRef(
        customer_email=customers_service.normalise_email(email, f"{side}_customer_email")
    )


async def transfer_points(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    data: CreateTransfer,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Move points from one customer to another in one transaction."""
    points_minor = parse_field(data.points, MAXIMUM_DECIMALS, "points")
    if points_minor <= 0:
        raise ValidationFailedError.for_field("points", "must be greater than zero")
    source = _body_ref(data.from_customer_id, data.from_customer_email, "from")
    target = _body_ref(data.to_customer_id, data.to_customer_email, "to")
    if source == target:
        raise ValidationFailedError.for_field(
            "to_customer_id", "must name another customer than the one debited"
        )
    for field, text in (("description", data.description), ("internal_note", data.internal_note)):
        check_characters(text, field)
    check_length(data.description, "description", DESCRIPTION_CHARS_MAX)
    check_length(data.internal_note, "internal_note", INTERNAL_NOTE_CHARS_MAX)
    operation = TransferPoints(
        source=source,
        target=target,
        points_minor=points_minor,
        description=clean_text(data.description),
        internal_note=clean_note(data.internal_note),
        apply_to_lifetime=data.apply_to_lifetime,
    )
    return await move_points(
        writer,
        merchant_id,
        operation,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )
