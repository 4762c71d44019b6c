from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from loyalty.text import DESCRIPTION_CHARS_MAX, INTERNAL_NOTE_CHARS_MAX


class CreateTransaction(msgspec.Struct, forbid_unknown_fields=True):
    """Credit (positive) or debit (negative) a customer's points."""

    points: Annotated[
        float,
        msgspec.Meta(
            description=(
                "Points to add (positive) or remove (negative); never zero. Whole numbers "
                "unless the programme allows decimals."
            ),
            examples=[100],
        ),
    ]
    description: Annotated[
        str,
        msgspec.Meta(
            max_length=DESCRIPTION_CHARS_MAX,
            description=(
                "Customer-facing reason shown in the activity log. HTML tags are stripped; "
                "blank means the programme's default text."
            ),
            examples=["Bonus points for completing a survey"],
        ),
    ]
    internal_note: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=INTERNAL_NOTE_CHARS_MAX, description="Staff-only note, never shown."
            ),
        ]
        | None
    ) = None
    apply_to_lifetime: (
        Annotated[
            bool,
            msgspec.Meta(
                description=(
                    "Count toward lifetime points. Default: true for credits, false for debits."
                )
            ),
        ]
        | None
    ) = None
    visible_to_customer: bool = True
    expires_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True, description="Credits only: when these points expire (overrides policy)."
            ),
        ]
        | None
    ) = None


class Transaction(msgspec.Struct, frozen=True):
    """One immutable ledger entry."""

    transaction_id: uuid.UUID
    customer_id: uuid.UUID
    points: float
    type: Literal["credit", "debit"]
    kind: str
    description: str
    internal_note: str | None
    visible_to_customer: bool
    apply_to_lifetime: bool
    points_balance: float
    sequence: int
    expires_at: datetime | None
    created_at: datetime


class TransactionEnvelope(msgspec.Struct, frozen=True):
    data: Transaction


class TransactionPage(msgspec.Struct, frozen=True):
    data: list[Transaction]
    next_cursor: str | None
