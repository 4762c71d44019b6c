"""The ledger: every points movement goes through ``move_points``.

``move_points`` is the whole write path of a movement (lock the balance,
check it, update it, append the immutable entry, write the event) in the
caller's transaction. A later version gathers concurrent movements into
batches behind this same signature.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import service as customers_service
from loyalty.customers.service import CustomerRef
from loyalty.db.types import utc_now
from loyalty.errors import BusinessRuleError, ValidationFailedError, invariant
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.ledger import repository
from loyalty.ledger.schemas import CreateTransaction, Transaction, TransactionPage
from loyalty.merchants import repository as merchants_repository
from loyalty.points import BALANCE_MINOR_MAX, PointsFormatError, format_points, parse_points
from loyalty.text import clean_note, clean_text

PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 100

EntryKind = Literal["adjustment", "earn", "redeem", "refund", "expire", "revert"]


class InsufficientPointsError(BusinessRuleError):
    code = "insufficient_points"


class BalanceLimitExceededError(BusinessRuleError):
    code = "balance_limit_exceeded"


@dataclass(frozen=True, slots=True)
class PointsMovement:
    merchant_id: uuid.UUID
    customer_id: uuid.UUID
    points_minor: int
    kind: EntryKind
    description: str
    internal_note: str | None = None
    visible_to_customer: bool = True
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None


def _lifetime_delta(movement: PointsMovement, lifetime_minor: int) -> int:
    if not movement.apply_to_lifetime:
        return 0
    # Removing earned points lowers lifetime, but never below zero.
    return max(movement.points_minor, -lifetime_minor)


async def move_points(connection: AsyncConnection, movement: PointsMovement) -> Transaction:
    """Apply one movement atomically, or raise without changing anything."""
    invariant(movement.points_minor != 0, "a movement moves points")
    now = utc_now()
    locked = await repository.lock_balance(connection, movement.merchant_id, movement.customer_id)
    balance_after = locked.points_balance_minor + movement.points_minor
    if balance_after < 0:
        raise InsufficientPointsError(
            "The customer does not have enough points for this debit.",
            {
                "points_balance": format_points(locked.points_balance_minor),
                "points_requested": format_points(-movement.points_minor),
            },
        )
    if balance_after > BALANCE_MINOR_MAX:
        raise BalanceLimitExceededError(
            "This credit would take the balance past the largest balance allowed.",
            {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
        )
    lifetime_delta = _lifetime_delta(movement, locked.lifetime_points_minor)
    changed = await repository.apply_to_balance(
        connection,
        merchant_id=movement.merchant_id,
        customer_id=movement.customer_id,
        points_minor=movement.points_minor,
        lifetime_delta_minor=lifetime_delta,
        spent_delta_minor=-movement.points_minor if movement.kind == "redeem" else 0,
        expired_delta_minor=-movement.points_minor if movement.kind == "expire" else 0,
        expected_sequence=locked.last_sequence,
        now=now,
    )
    invariant(changed == 1, "the locked balance row is updated exactly once")
    entry = {
        "merchant_id": movement.merchant_id,
        "id": new_id(),
        "customer_id": movement.customer_id,
        "sequence": locked.last_sequence + 1,
        "points_minor": movement.points_minor,
        "kind": movement.kind,
        "description": movement.description,
        "internal_note": movement.internal_note,
        "visible_to_customer": movement.visible_to_customer,
        "apply_to_lifetime": movement.apply_to_lifetime,
        "lifetime_delta_minor": lifetime_delta,
        "balance_after_minor": balance_after,
        "expires_at": movement.expires_at,
        "created_at": now,
    }
    await repository.insert_entry(connection, entry)
    transaction = to_transaction(SimpleNamespace(**entry))
    await events.record(
        connection,
        merchant_id=movement.merchant_id,
        event_type="transaction.created",
        subject_id=movement.customer_id,
        payload={
            "transaction": msgspec.to_builtins(transaction),
            "lifetime_points": format_points(locked.lifetime_points_minor + lifetime_delta),
        },
        now=now,
    )
    return transaction


async def adjust_points(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    data: CreateTransaction,
) -> Transaction:
    """A merchant's manual credit or debit (seed 000)."""
    settings = await merchants_repository.get_program_settings(connection, merchant_id)
    try:
        points_minor = parse_points(data.points, settings.points_decimals)
    except PointsFormatError as error:
        raise ValidationFailedError.for_field("points", str(error)) from error
    if points_minor == 0:
        raise ValidationFailedError.for_field("points", "must not be zero")
    is_credit = points_minor > 0
    if data.expires_at is not None:
        if not is_credit:
            raise ValidationFailedError.for_field("expires_at", "only credits can expire")
        if data.expires_at <= utc_now():
            raise ValidationFailedError.for_field("expires_at", "must be in the future")
    customer_id = await customers_service.resolve_customer_id(connection, merchant_id, ref)
    description = clean_text(data.description, settings.default_description)
    assert description is not None
    movement = PointsMovement(
        merchant_id=merchant_id,
        customer_id=customer_id,
        points_minor=points_minor,
        kind="adjustment",
        description=description,
        internal_note=clean_note(data.internal_note),
        visible_to_customer=data.visible_to_customer,
        apply_to_lifetime=is_credit if data.apply_to_lifetime is None else data.apply_to_lifetime,
        expires_at=data.expires_at,
    )
    return await move_points(connection, movement)


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
