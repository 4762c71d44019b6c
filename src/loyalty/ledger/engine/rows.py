"""The rows a batch reads and writes, typed: one class per table (or per view of one).

The stores build these from their drivers' rows and write them back column by
column: each class's fields are named after its table's columns, in the order
the stores use (``columns(RowClass)``). Rows that a batch changes are mutable
and changed in place, so that a later movement of the same batch sees the
change.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

KeyRef = tuple[uuid.UUID, str]  # (merchant_id, idempotency key)
CustomerId = tuple[uuid.UUID, uuid.UUID]  # (merchant_id, customer_id)
RowKey = tuple[uuid.UUID, uuid.UUID]  # (merchant_id, id)


_columns: dict[type[Any], tuple[str, ...]] = {}


def columns(row_class: type[Any]) -> tuple[str, ...]:
    """The row class's columns, in declaration order."""
    found = _columns.get(row_class)
    if found is None:
        found = _columns[row_class] = tuple(
            f.name for f in dataclasses.fields(row_class) if f.metadata.get("column", True)
        )
    return found


def _not_a_column(default: Any) -> Any:
    return dataclasses.field(default=default, metadata={"column": False})


@dataclasses.dataclass(frozen=True, slots=True)
class StoredKey:
    """What an idempotency key already used holds (status 0: still in progress)."""

    request_fingerprint: str
    response_status: int
    response_body: str


@dataclasses.dataclass(slots=True)
class LockedCustomer:
    """A customer's balance row, locked for the batch, with its customer row's ledger
    columns and its programme's settings."""

    merchant_id: uuid.UUID
    customer_id: uuid.UUID
    # The platform id and email: None once the customer is erased (a customer locked
    # by its UUID may be), and from its erasure on within the batch.
    external_id: str | None
    email: str | None
    # customer_balances
    points_balance_minor: int
    lifetime_points_minor: int
    points_spent_minor: int
    points_expired_minor: int
    last_sequence: int
    pending_points_minor: int = 0
    last_activity_at: datetime | None = None
    expiring_lots_minor: int = 0
    next_expiry_at: datetime | None = None
    next_expiry_minor: int = 0
    tier_id: uuid.UUID | None = None
    tier_expires_at: datetime | None = None
    tier_recheck_at: datetime | None = None
    store_credit_balance_minor: int = 0
    # customers
    status: str = "active"
    total_spent_minor: int = 0
    rewarded_actions: str = "[]"
    referred_by: uuid.UUID | None = None
    referral_completed_at: datetime | None = None
    referred_completed: int = 0
    created_at: datetime | None = None
    # program_settings
    points_decimals: int = 0
    default_description: str = ""
    discount_code_prefix: str = ""
    expiry_policy: str = "none"
    expiry_days: int | None = None
    expiry_changed_at: datetime | None = None
    tier_basis: str | None = None
    tier_window_days: int | None = None
    # The batch's bookkeeping.
    initial_sequence: int = _not_a_column(0)
    initial_customer: tuple[Any, ...] = _not_a_column(())
    touched: bool = _not_a_column(False)

    def __post_init__(self) -> None:
        self.initial_sequence = self.last_sequence
        self.initial_customer = self.customer_values()

    @property
    def key(self) -> CustomerId:
        return (self.merchant_id, self.customer_id)

    def customer_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in CUSTOMER_COLUMNS)

    @property
    def customer_changed(self) -> bool:
        return self.customer_values() != self.initial_customer


# The balance columns a batch writes (customer_balances), in the order both stores send them.
BALANCE_COLUMNS = (
    "points_balance_minor", "lifetime_points_minor", "points_spent_minor",
    "points_expired_minor", "pending_points_minor", "last_sequence", "last_activity_at",
    "expiring_lots_minor", "next_expiry_at", "next_expiry_minor", "tier_id", "tier_expires_at",
    "tier_recheck_at", "store_credit_balance_minor",
)  # fmt: skip
# The customers columns only the ledger writer changes (under the balance lock).
CUSTOMER_COLUMNS = (
    "total_spent_minor", "rewarded_actions", "referral_completed_at", "referred_completed",
)  # fmt: skip
# Read with the lock, not written by the batch (an erasure writes the customer's
# identity and profile columns itself: ``ErasureRow``).
SETTINGS_COLUMNS = (
    "status", "referred_by", "created_at", "points_decimals", "default_description",
    "discount_code_prefix", "expiry_policy", "expiry_days", "expiry_changed_at", "tier_basis",
    "tier_window_days",
)  # fmt: skip
# What the stores read for each locked customer besides its identity columns, in the
# order of its fields (the stores build it from a row positionally: the hot path).
LOCKED_COLUMNS: tuple[str, ...] = columns(LockedCustomer)[4:]


@dataclasses.dataclass(slots=True)  # not frozen: built once per posting (the hot path)
class EntryRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    customer_id: uuid.UUID
    sequence: int
    points_minor: int
    kind: str
    description: str
    internal_note: str | None
    visible_to_customer: bool
    apply_to_lifetime: bool
    lifetime_delta_minor: int
    balance_after_minor: int
    expires_at: datetime | None
    earn_rule_id: uuid.UUID | None
    # Who made it (loyalty.actors); created_at stays last (the stores send it once).
    actor: str
    created_at: datetime


@dataclasses.dataclass(slots=True)  # not frozen: built once per posting (the hot path)
class EventRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    type: str
    subject_id: uuid.UUID
    payload: str
    # The platform id of the customer it is about.
    customer_ref: str | None
    actor: str
    created_at: datetime


@dataclasses.dataclass(slots=True)
class LotRow:
    """An expiring lot: the unspent rest of one credit (its id is the entry's)."""

    merchant_id: uuid.UUID
    id: uuid.UUID
    customer_id: uuid.UUID
    remaining_minor: int
    expires_at: datetime
    created_at: datetime
    stored_remaining_minor: int = _not_a_column(0)  # 0: not in the database yet


@dataclasses.dataclass(slots=True)
class PendingRow:
    """A pending credit: ``points_minor`` as created, ``points_cancelled_minor`` of them
    taken off (refunds; all of them when cancelled); the rest is held, or was released."""

    merchant_id: uuid.UUID
    id: uuid.UUID
    customer_id: uuid.UUID
    points_minor: int
    points_cancelled_minor: int
    kind: str
    description: str
    internal_note: str | None
    visible_to_customer: bool
    apply_to_lifetime: bool
    expires_at: datetime | None
    status: str
    available_at: datetime
    transaction_id: uuid.UUID | None
    earn_rule_id: uuid.UUID | None
    released_at: datetime | None
    cancelled_at: datetime | None
    created_at: datetime

    @property
    def remaining_minor(self) -> int:
        """Points not taken off: held while pending, posted once released."""
        return self.points_minor - self.points_cancelled_minor


@dataclasses.dataclass(frozen=True, slots=True)
class TierRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    name: str
    threshold_minor: int
    retention_days: int | None
    multiplier_hundredths: int = 100


@dataclasses.dataclass(slots=True)
class WindowRow:
    """A customer's tier basis inside the programme's rolling window."""

    total_minor: int = 0
    # The oldest movement still inside the window: it leaves at oldest + window.
    oldest_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RewardRow:
    """A catalogue reward, as a redemption needs it."""

    merchant_id: uuid.UUID
    id: uuid.UUID
    name: str
    reward_type: str
    points_cost_minor: int
    reward_rule: str
    active: bool
    deleted: bool
    code_validity_days: int | None
    per_customer_limit: int | None


@dataclasses.dataclass(slots=True)
class CustomerRewardRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    customer_id: uuid.UUID
    reward_id: uuid.UUID
    reward_type: str
    reward_name: str
    reward_rule: str
    status: str
    discount_code: str | None
    points_used_minor: int
    store_credit_minor: int | None
    order_id: str | None
    redeem_transaction_id: uuid.UUID | None
    revert_transaction_id: uuid.UUID | None
    expires_at: datetime | None
    used_at: datetime | None
    reverted_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class EarnRuleRow:
    merchant_id: uuid.UUID
    type: str
    id: uuid.UUID
    points_minor: int
    active: bool
    points_per_currency_unit_minor: int | None
    rounding: str | None
    min_order_total_minor: int | None
    pending_days: int | None
    referee_points_minor: int | None
    max_per_customer: int | None
    period_days: int | None


@dataclasses.dataclass(slots=True)
class OrderRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    order_id: str
    customer_id: uuid.UUID
    total_minor: int
    currency: str
    discount_codes: str
    fingerprint: str
    status: str
    refunded_minor: int
    points_earned_minor: int
    points_removed_minor: int  # debited from the balance by refunds
    refund_points_minor: int  # what the refunds so far stand for, in total
    pending_id: uuid.UUID | None
    transaction_id: uuid.UUID | None
    earn_rule_id: uuid.UUID | None
    not_earned_reason: str | None
    placed_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class RefundRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    order_row_id: uuid.UUID
    amount_minor: int
    points_removed_minor: int
    points_cancelled_minor: int
    shortfall_minor: int
    transaction_id: uuid.UUID | None
    created_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class ActionRow:
    merchant_id: uuid.UUID
    id: uuid.UUID
    customer_id: uuid.UUID
    action: str
    earn_rule_id: uuid.UUID
    points_minor: int
    transaction_id: uuid.UUID
    created_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class ErasureRow:
    """A customer erased: its personal data and platform id removed, status ``erased``;
    the events that carried its platform id (``external_id``, as it was) blanked."""

    merchant_id: uuid.UUID
    customer_id: uuid.UUID
    external_id: str | None
    email: str | None
    updated_at: datetime


def locked_select_list() -> str:
    """The SELECT list of a locked customer, over ``customers c``, ``customer_balances b``
    and ``program_settings s`` (both stores read the same columns in the same order)."""
    table_of = {
        **dict.fromkeys(BALANCE_COLUMNS, "b"),
        **dict.fromkeys(CUSTOMER_COLUMNS, "c"),
        "status": "c",
        "referred_by": "c",
        "created_at": "c",
    }
    locked = ", ".join(f"{table_of.get(column, 's')}.{column}" for column in LOCKED_COLUMNS)
    return f"c.merchant_id, c.id, c.external_id, c.email, {locked}"
