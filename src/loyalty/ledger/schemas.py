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
    pending_days: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=3650,
                description=(
                    "Credits only: hold the points as pending for this many days "
                    "(e.g. a return window) before they become available."
                ),
            ),
        ]
        | None
    ) = None
    available_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True,
                description="Credits only: hold the points as pending until this moment.",
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
    # The earn rule that granted the points (orders, actions); null for manual ones.
    earn_rule_id: uuid.UUID | None = None
    # Who made it: user:<email>, api_key:<prefix>, system or import:<id>.
    actor: str = "system"


class TransactionEnvelope(msgspec.Struct, frozen=True):
    data: Transaction


class TransactionPage(msgspec.Struct, frozen=True):
    data: list[Transaction]
    next_cursor: str | None


class PendingCredit(msgspec.Struct, frozen=True):
    """A credit on hold: counted in ``pending_points``, not redeemable, never
    expiring. Released into the ledger at ``available_at`` (or when approved),
    or cancelled. ``transaction_id`` is the ledger entry that released it.
    ``points`` is what it was created with; ``points_cancelled`` of them were taken
    off (by an order's refunds, or all of them when cancelled): ``points -
    points_cancelled`` is what is held, or what was released."""

    id: uuid.UUID
    customer_id: uuid.UUID
    points: float
    points_cancelled: float
    kind: str
    description: str
    internal_note: str | None
    visible_to_customer: bool
    apply_to_lifetime: bool
    expires_at: datetime | None
    status: Literal["pending", "released", "cancelled"]
    available_at: datetime
    transaction_id: uuid.UUID | None
    earn_rule_id: uuid.UUID | None
    released_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime


class PendingCreditMovement(PendingCredit, frozen=True):
    """A pending credit with the customer's balances after the change."""

    points_balance: float
    pending_points: float


class PendingCreditEnvelope(msgspec.Struct, frozen=True):
    data: PendingCreditMovement


class PendingCreditPage(msgspec.Struct, frozen=True):
    data: list[PendingCredit]
    next_cursor: str | None


class PendingRelease(msgspec.Struct, frozen=True):
    released: list[PendingCredit]
    points_balance: float
    pending_points: float


class PendingReleaseEnvelope(msgspec.Struct, frozen=True):
    data: PendingRelease


class ApprovePending(msgspec.Struct, forbid_unknown_fields=True):
    """Release one pending credit now (``pending_id``), or all of the customer's."""

    pending_id: uuid.UUID | None = None


class CreateTransfer(msgspec.Struct, forbid_unknown_fields=True):
    """Move points from one customer to another (merging duplicate accounts, gifting)."""

    points: Annotated[
        float,
        msgspec.Meta(
            description="Points to move; positive, within the programme's decimals.",
            examples=[250],
        ),
    ]
    from_customer_id: (
        Annotated[str, msgspec.Meta(description="The platform id of the customer debited.")] | None
    ) = None
    from_customer_email: (
        Annotated[str, msgspec.Meta(description="Or the email of the customer debited.")] | None
    ) = None
    to_customer_id: (
        Annotated[str, msgspec.Meta(description="The platform id of the customer credited.")] | None
    ) = None
    to_customer_email: (
        Annotated[str, msgspec.Meta(description="Or the email of the customer credited.")] | None
    ) = None
    description: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=DESCRIPTION_CHARS_MAX,
                description=(
                    "Customer-facing text on both entries; default: 'Points transferred "
                    "to/from <platform id>'."
                ),
            ),
        ]
        | None
    ) = None
    internal_note: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=INTERNAL_NOTE_CHARS_MAX, description="Staff-only note, never shown."
            ),
        ]
        | None
    ) = None
    apply_to_lifetime: Annotated[
        bool,
        msgspec.Meta(
            description=(
                "Move lifetime points too (the debited customer's lifetime goes down, the "
                "credited one's up). Default false: a transfer is not earning."
            )
        ),
    ] = False


class Transfer(msgspec.Struct, frozen=True):
    transfer_id: uuid.UUID
    from_: Transaction = msgspec.field(name="from")
    to: Transaction = msgspec.field(name="to")


class TransferEnvelope(msgspec.Struct, frozen=True):
    data: Transfer
