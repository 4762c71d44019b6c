"""Planning a batch of points movements.

Pure Python, no I/O: given the movements in arrival order, what the database
already holds for their idempotency keys, and the locked balances of their
customers, decide each movement's outcome on its own (an insufficient debit
fails alone) and produce the set-based writes that apply the accepted ones.
The stores (``store_postgres``, ``store_sqlite``) read the inputs and apply
the plan in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from loyalty.customers.schemas import ActionEnvelope, ActionResult
from loyalty.customers.service import CustomerRef, customer_not_found
from loyalty.errors import LoyaltyError, ValidationFailedError, invariant
from loyalty.ids import new_id
from loyalty.ledger import actions, lifecycle, redemptions
from loyalty.ledger import orders as order_ops
from loyalty.ledger.errors import (
    BalanceLimitExceededError,
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
    InsufficientPointsError,
)
from loyalty.ledger.lifecycle import (
    EXPIRED_DESCRIPTION,
    Cancel,
    Hold,
    InvalidPendingStateError,
    LifecycleContext,
    LifecycleOperation,
    LifecycleWrites,
    Maintain,
    PendingCreditNotFoundError,
    Release,
)
from loyalty.ledger.schemas import (
    PendingCredit,
    PendingCreditEnvelope,
    PendingCreditMovement,
    PendingRelease,
    PendingReleaseEnvelope,
    Transaction,
    TransactionEnvelope,
)
from loyalty.orders.schemas import (
    Order,
    OrderEnvelope,
    OrderResult,
    Refund,
    RefundEnvelope,
    RefundResult,
)
from loyalty.points import BALANCE_MINOR_MAX, MINOR_PER_POINT, format_points
from loyalty.rewards.customer_rewards import ACTIVE, effective_status, to_detail

EntryKind = Literal["adjustment", "earn", "redeem", "refund", "expire", "revert"]
KeyRef = tuple[uuid.UUID, str]
CustomerKey = tuple[uuid.UUID, str, str]  # (merchant_id, "id" | "email", value)

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Movement:
    """One requested points movement, validated except for what needs the database."""

    merchant_id: uuid.UUID
    customer: CustomerRef
    points_minor: int
    kind: EntryKind
    description: str | None  # cleaned; None means the programme's default text
    internal_note: str | None = None
    visible_to_customer: bool = True
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    request_fingerprint: str = ""
    # A redemption or a revert: the points then come from the reward, not from here.
    reward: redemptions.RewardOperation | None = None
    # A hold, a release or cancellation of one, or the scheduler's maintenance.
    lifecycle: LifecycleOperation | None = None
    # The earn rule that grants the points (recorded on the entry).
    earn_rule_id: uuid.UUID | None = None
    # An order to record (and earn for), or a refund of one.
    order: order_ops.OrderOperation | None = None
    # A customer action to reward (newsletter, follow, birthday...).
    action: actions.RewardAction | None = None
    # Another customer the operation may touch (an order's referrer), locked too.
    also_lock: CustomerRef | None = None

    @property
    def key_ref(self) -> KeyRef | None:
        if self.idempotency_key is None:
            return None
        return (self.merchant_id, self.idempotency_key)

    @property
    def customer_key(self) -> CustomerKey:
        if self.customer.customer_id is not None:
            return (self.merchant_id, "id", self.customer.customer_id)
        assert self.customer.customer_email is not None
        return (self.merchant_id, "email", self.customer.customer_email)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the client receives; ``replayed`` when it comes from an earlier request."""

    status_code: int
    body: bytes
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class StoredKey:
    request_fingerprint: str
    response_status: int
    response_body: str


@dataclass(slots=True)
class LockedCustomer:
    """A customer's balance row, locked for the batch, and its programme settings."""

    merchant_id: uuid.UUID
    customer_id: uuid.UUID
    external_id: str
    email: str | None
    points_balance_minor: int
    lifetime_points_minor: int
    points_spent_minor: int
    points_expired_minor: int
    last_sequence: int
    points_decimals: int
    default_description: str
    status: str = "active"
    discount_code_prefix: str = ""
    pending_points_minor: int = 0
    total_spent_minor: int = 0
    last_activity_at: datetime | None = None
    expiring_lots_minor: int = 0
    next_expiry_at: datetime | None = None
    next_expiry_minor: int = 0
    tier_id: uuid.UUID | None = None
    tier_expires_at: datetime | None = None
    tier_recheck_at: datetime | None = None
    expiry_policy: str = "none"
    expiry_days: int | None = None
    expiry_changed_at: datetime | None = None
    tier_basis: str | None = None
    tier_window_days: int | None = None
    rewarded_actions: str = "[]"
    referred_by: uuid.UUID | None = None
    referral_completed_at: datetime | None = None
    referred_completed: int = 0
    initial_sequence: int = 0
    touched: bool = False

    def __post_init__(self) -> None:
        self.initial_sequence = self.last_sequence


# The balance columns a batch writes, in the order both stores send them.
BALANCE_COLUMNS = (
    "points_balance_minor", "lifetime_points_minor", "points_spent_minor",
    "points_expired_minor", "pending_points_minor", "last_sequence", "last_activity_at",
    "expiring_lots_minor", "next_expiry_at", "next_expiry_minor", "tier_id", "tier_expires_at",
    "tier_recheck_at",
)  # fmt: skip
# What the stores read for each locked customer, besides the identity columns.
LOCKED_COLUMNS = (
    "points_balance_minor", "lifetime_points_minor", "points_spent_minor",
    "points_expired_minor", "last_sequence", "points_decimals", "default_description", "status",
    "discount_code_prefix", "pending_points_minor", "total_spent_minor", "last_activity_at",
    "expiring_lots_minor", "next_expiry_at", "next_expiry_minor", "tier_id", "tier_expires_at",
    "tier_recheck_at", "expiry_policy", "expiry_days", "expiry_changed_at", "tier_basis",
    "tier_window_days", "rewarded_actions", "referred_by", "referral_completed_at",
    "referred_completed",
)  # fmt: skip


def balance_row(locked: LockedCustomer) -> tuple[Any, ...]:
    """(merchant_id, customer_id, *BALANCE_COLUMNS, previous last_sequence)."""
    return (
        locked.merchant_id,
        locked.customer_id,
        *(getattr(locked, column) for column in BALANCE_COLUMNS),
        locked.initial_sequence,
    )


@dataclass(slots=True)
class Plan:
    outcomes: list[Outcome | None]
    # Rows of balance_row(); entries and events as dictionaries of column values.
    balance_updates: list[tuple[Any, ...]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    key_updates: list[tuple[uuid.UUID, str, int, str]] = field(default_factory=list)
    key_deletes: list[KeyRef] = field(default_factory=list)
    # Later duplicates of a key inside the batch answer with the first one's outcome.
    followers: dict[int, int] = field(default_factory=dict)
    # Movements whose outcome is not stored under their key (refused before running).
    unstored: set[int] = field(default_factory=set)
    rewards: redemptions.RewardWrites = field(default_factory=redemptions.RewardWrites)
    lifecycle: LifecycleWrites = field(default_factory=LifecycleWrites)
    orders: order_ops.OrderWrites = field(default_factory=order_ops.OrderWrites)
    actions: actions.ActionWrites = field(default_factory=actions.ActionWrites)


def key_leaders(movements: list[Movement]) -> dict[KeyRef, str]:
    """Each distinct idempotency key of the batch, with its first request's fingerprint."""
    leaders: dict[KeyRef, str] = {}
    for movement in movements:
        key = movement.key_ref
        if key is not None and key not in leaders:
            leaders[key] = movement.request_fingerprint
    return leaders


def customer_references(
    movements: list[Movement],
) -> tuple[set[tuple[uuid.UUID, str]], set[tuple[uuid.UUID, str]]]:
    """The (merchant, platform id) and (merchant, email) pairs the batch names."""
    by_id: set[tuple[uuid.UUID, str]] = set()
    by_email: set[tuple[uuid.UUID, str]] = set()
    for movement in movements:
        for ref in (movement.customer, movement.also_lock):
            if ref is None:
                continue
            if ref.customer_id is not None:
                by_id.add((movement.merchant_id, ref.customer_id))
            elif ref.customer_email is not None:
                by_email.add((movement.merchant_id, ref.customer_email))
    return by_id, by_email


def index_customers(locked: list[LockedCustomer]) -> dict[CustomerKey, LockedCustomer]:
    """Each locked customer under its platform id and its email (one object for both)."""
    customers: dict[CustomerKey, LockedCustomer] = {}
    for customer in locked:
        customers[(customer.merchant_id, "id", customer.external_id)] = customer
        if customer.email is not None:
            customers[(customer.merchant_id, "email", customer.email)] = customer
    return customers


def error_outcome(error: LoyaltyError) -> Outcome:
    return Outcome(error.status_code, _encoder.encode(error.to_body()))


def _replay(movement: Movement, stored: StoredKey) -> Outcome:
    if stored.request_fingerprint != movement.request_fingerprint:
        return error_outcome(_key_reused(movement))
    if stored.response_status == 0:
        return error_outcome(
            IdempotencyRequestInProgressError(
                "A request with this Idempotency-Key is still in progress; retry shortly.",
                {"idempotency_key": movement.idempotency_key},
            )
        )
    return Outcome(stored.response_status, stored.response_body.encode(), replayed=True)


def _key_reused(movement: Movement) -> IdempotencyKeyReusedError:
    return IdempotencyKeyReusedError(
        "This Idempotency-Key was used with a different request.",
        {"idempotency_key": movement.idempotency_key},
    )


def _check_precision(movement: Movement, decimals: int) -> None:
    if movement.points_minor % (MINOR_PER_POINT // 10**decimals) == 0:
        return
    message = (
        "must be a whole number (this programme has no decimals)"
        if decimals == 0
        else f"may have at most {decimals} decimal places"
    )
    raise ValidationFailedError.for_field("points", message)


def plan_batch(
    movements: list[Movement],
    *,
    claimed: set[KeyRef],
    stored: dict[KeyRef, StoredKey],
    customers: dict[CustomerKey, LockedCustomer],
    now: datetime,
    rewards: redemptions.RewardContext | None = None,
    times: LifecycleContext | None = None,
    order_context: order_ops.OrderContext | None = None,
    action_context: actions.ActionContext | None = None,
) -> Plan:
    """Decide every movement in arrival order and collect the writes."""
    plan = Plan(outcomes=[None] * len(movements))
    batch = _Batch(
        plan,
        now,
        rewards if rewards is not None else redemptions.RewardContext(),
        times if times is not None else LifecycleContext(),
        order_context if order_context is not None else order_ops.OrderContext(),
        action_context if action_context is not None else actions.ActionContext(),
        {(c.merchant_id, c.customer_id): c for c in customers.values()},
    )
    first_index: dict[KeyRef, int] = {}
    for index, movement in enumerate(movements):
        key = movement.key_ref
        if key is not None:
            if key in first_index:
                leader = movements[first_index[key]]
                if leader.request_fingerprint == movement.request_fingerprint:
                    plan.followers[index] = first_index[key]
                else:
                    plan.outcomes[index] = error_outcome(_key_reused(movement))
                continue
            first_index[key] = index
            if key not in claimed:
                plan.outcomes[index] = _replay(movement, stored[key])
                continue
        try:
            outcome = batch.apply(movement, customers.get(movement.customer_key))
        except LoyaltyError as error:
            outcome = error_outcome(error)
            if key is not None and not error.replayable:
                plan.key_deletes.append(key)
                plan.unstored.add(index)
                key = None
        plan.outcomes[index] = outcome
        if key is not None:
            plan.key_updates.append((key[0], key[1], outcome.status_code, outcome.body.decode()))
    # A customer may be listed under its id and its email: one row, updated once.
    distinct = {(locked.merchant_id, locked.customer_id): locked for locked in customers.values()}
    for locked in distinct.values():
        if locked.touched:
            batch.settle(locked)
            plan.balance_updates.append(balance_row(locked))
    return plan


def _check_balance(balance_after: int, *, reward: bool, points_minor: int, before: int) -> None:
    if balance_after < 0:
        raise InsufficientPointsError(
            "The customer does not have enough points for this reward."
            if reward
            else "The customer does not have enough points for this debit.",
            {
                "points_balance": format_points(before),
                "points_requested": format_points(-points_minor),
            },
        )
    if balance_after > BALANCE_MINOR_MAX:
        raise BalanceLimitExceededError(
            "This credit would take the balance past the largest balance allowed.",
            {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
        )


@dataclass(frozen=True, slots=True)
class _Posting:
    """One ledger entry to post for a customer."""

    points_minor: int
    kind: EntryKind
    description: str
    internal_note: str | None = None
    visible_to_customer: bool = True
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None
    entry_id: uuid.UUID | None = None
    earn_rule_id: uuid.UUID | None = None


@dataclass(slots=True)
class _Batch:
    plan: Plan
    now: datetime
    rewards: redemptions.RewardContext
    times: LifecycleContext
    orders: order_ops.OrderContext
    action_context: actions.ActionContext
    # Every locked customer by (merchant_id, customer_id).
    by_uuid: dict[tuple[uuid.UUID, uuid.UUID], LockedCustomer]

    def event(
        self, merchant_id: uuid.UUID, event_type: str, subject_id: uuid.UUID, payload: str
    ) -> None:
        self.plan.events.append(
            {
                "merchant_id": merchant_id,
                "id": new_id(),
                "type": event_type,
                "subject_id": subject_id,
                "payload": payload,
                "created_at": self.now,
            }
        )

    def apply(self, movement: Movement, locked: LockedCustomer | None) -> Outcome:
        if locked is None:
            raise customer_not_found(movement.customer)
        operation = movement.lifecycle
        if operation is not None:
            return self.apply_lifecycle(movement, operation, locked)
        if movement.order is not None:
            return self.apply_order(movement.order, locked)
        if movement.action is not None:
            return self.reward_action(movement.action.action, locked)
        if movement.reward is None:
            _check_precision(movement, locked.points_decimals)
            transaction = self.post(
                locked,
                _Posting(
                    points_minor=movement.points_minor,
                    kind=movement.kind,
                    description=movement.description or locked.default_description,
                    internal_note=movement.internal_note,
                    visible_to_customer=movement.visible_to_customer,
                    apply_to_lifetime=movement.apply_to_lifetime,
                    expires_at=movement.expires_at,
                    earn_rule_id=movement.earn_rule_id,
                ),
            )
            return Outcome(201, _encoder.encode(TransactionEnvelope(data=transaction)))
        # The reward's cost was checked against the precision when it was set.
        prepared = redemptions.prepare(movement, locked, self.rewards, self.now)
        transaction = self.post(
            locked,
            _Posting(
                points_minor=prepared.points_minor,
                kind=movement.kind,
                description=prepared.description,
                internal_note=movement.internal_note,
                visible_to_customer=movement.visible_to_customer,
            ),
            reward=True,
        )
        event_type, row = redemptions.apply(
            prepared,
            self.plan.rewards,
            self.rewards,
            locked,
            transaction_id=transaction.transaction_id,
            now=self.now,
        )
        detail = to_detail(row, locked.external_id, self.now)
        self.event(locked.merchant_id, event_type, row["id"], redemptions.event_payload(detail))
        status_code = 201 if prepared.reward is not None else 200
        return Outcome(status_code, redemptions.reply(detail, locked.points_balance_minor))

    def post(
        self, locked: LockedCustomer, posting: _Posting, *, reward: bool = False
    ) -> Transaction:
        """Post one entry: balances, lots, activity, the entry and its event."""
        points_minor = posting.points_minor
        invariant(points_minor != 0, "a movement moves points")
        balance_before = locked.points_balance_minor
        balance_after = balance_before + points_minor
        _check_balance(
            balance_after, reward=reward, points_minor=points_minor, before=balance_before
        )
        lifetime_delta = 0
        if posting.apply_to_lifetime:
            # Removing earned points lowers lifetime, but never below zero.
            lifetime_delta = max(points_minor, -locked.lifetime_points_minor)
        now = self.now
        entry_id = posting.entry_id or new_id()
        locked.points_balance_minor = balance_after
        locked.lifetime_points_minor += lifetime_delta
        if posting.kind in ("redeem", "revert"):
            # Spent is net of refunded redemptions.
            locked.points_spent_minor -= points_minor
        if posting.kind == "expire":
            locked.points_expired_minor -= points_minor
        if points_minor > 0:
            expires_at = lifecycle.credit_expiry(locked, posting.expires_at, now)
            if expires_at is not None:
                lifecycle.open_lot(self.times, locked, entry_id, points_minor, expires_at, now)
        else:
            lifecycle.spend_lots(self.times, locked, -points_minor)
        if points_minor > 0 or posting.kind == "redeem":
            locked.last_activity_at = now
        lifecycle.add_to_window(self.times, locked, "lifetime_points", lifetime_delta, now, now)
        locked.last_sequence += 1
        locked.touched = True
        self.plan.entries.append(
            {
                "merchant_id": locked.merchant_id,
                "id": entry_id,
                "customer_id": locked.customer_id,
                "sequence": locked.last_sequence,
                "points_minor": points_minor,
                "kind": posting.kind,
                "description": posting.description,
                "internal_note": posting.internal_note,
                "visible_to_customer": posting.visible_to_customer,
                "apply_to_lifetime": posting.apply_to_lifetime,
                "lifetime_delta_minor": lifetime_delta,
                "balance_after_minor": balance_after,
                "expires_at": posting.expires_at,
                "earn_rule_id": posting.earn_rule_id,
                "created_at": now,
            }
        )
        transaction = Transaction(
            transaction_id=entry_id,
            customer_id=locked.customer_id,
            points=format_points(points_minor),
            type="credit" if points_minor > 0 else "debit",
            kind=posting.kind,
            description=posting.description,
            internal_note=posting.internal_note,
            visible_to_customer=posting.visible_to_customer,
            apply_to_lifetime=posting.apply_to_lifetime,
            points_balance=format_points(balance_after),
            sequence=locked.last_sequence,
            expires_at=posting.expires_at,
            earn_rule_id=posting.earn_rule_id,
            created_at=now,
        )
        self.event(
            locked.merchant_id,
            "transaction.created",
            locked.customer_id,
            _encoder.encode(
                {
                    "transaction": transaction,
                    "lifetime_points": format_points(locked.lifetime_points_minor),
                }
            ).decode(),
        )
        return transaction

    # Holds, releases, cancellations, maintenance ---------------------------------

    def apply_lifecycle(
        self, movement: Movement, operation: LifecycleOperation, locked: LockedCustomer
    ) -> Outcome:
        if isinstance(operation, Hold):
            return self.hold(movement, operation, locked)
        if isinstance(operation, Cancel):
            row = self.named_pending(operation.pending_id, locked, "cancel")
            self.finish_pending(locked, row, "cancelled", None)
            return Outcome(200, pending_reply(row, locked))
        if isinstance(operation, Release):
            if operation.pending_id is not None:
                rows = [self.named_pending(operation.pending_id, locked, "release")]
            else:
                rows = self.times.customer_pending(locked)
            released = [self.release(locked, row) for row in rows]
            return Outcome(200, release_reply(released, locked))
        invariant(isinstance(operation, Maintain), "a lifecycle operation is known")
        locked.touched = True  # the tier is rechecked even when nothing moves
        expired = lifecycle.due_expiry(self.times, locked, self.now)
        if expired:
            self.post(
                locked,
                _Posting(points_minor=-expired, kind="expire", description=EXPIRED_DESCRIPTION),
            )
        due = [
            row for row in self.times.customer_pending(locked) if row["available_at"] <= self.now
        ]
        for row in due:
            self.release(locked, row)
        return Outcome(
            200,
            _encoder.encode(
                {"data": {"points_expired": format_points(expired), "pending_released": len(due)}}
            ),
        )

    def hold(self, movement: Movement, operation: Hold, locked: LockedCustomer) -> Outcome:
        _check_precision(movement, locked.points_decimals)
        posting = _Posting(
            points_minor=movement.points_minor,
            kind=movement.kind,
            description=movement.description or locked.default_description,
            internal_note=movement.internal_note,
            visible_to_customer=movement.visible_to_customer,
            apply_to_lifetime=movement.apply_to_lifetime,
            expires_at=movement.expires_at,
            earn_rule_id=movement.earn_rule_id,
        )
        row = self.new_hold(locked, posting, operation.available_at)
        return Outcome(201, pending_reply(row, locked))

    def new_hold(
        self, locked: LockedCustomer, posting: _Posting, available_at: datetime
    ) -> dict[str, Any]:
        """Hold a credit as pending until ``available_at``."""
        invariant(posting.points_minor > 0, "only credits are held")
        pending_after = locked.pending_points_minor + posting.points_minor
        if locked.points_balance_minor + pending_after > BALANCE_MINOR_MAX:
            raise BalanceLimitExceededError(
                "This credit would take the balance past the largest balance allowed.",
                {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
            )
        row: dict[str, Any] = {
            "merchant_id": locked.merchant_id,
            "id": new_id(),
            "customer_id": locked.customer_id,
            "points_minor": posting.points_minor,
            "kind": posting.kind,
            "description": posting.description,
            "internal_note": posting.internal_note,
            "visible_to_customer": posting.visible_to_customer,
            "apply_to_lifetime": posting.apply_to_lifetime,
            "expires_at": posting.expires_at,
            "status": "pending",
            "available_at": available_at,
            "transaction_id": None,
            "earn_rule_id": posting.earn_rule_id,
            "released_at": None,
            "cancelled_at": None,
            "created_at": self.now,
        }
        self.plan.lifecycle.pending_inserts.append(row)
        self.plan.lifecycle.new_pending.add(row["id"])
        self.times.pending[(locked.merchant_id, row["id"])] = row
        locked.pending_points_minor = pending_after
        # Earning, even on hold, is activity (inactivity expiry restarts).
        locked.last_activity_at = self.now
        locked.touched = True
        self.event(locked.merchant_id, "pending_points.created", row["id"], pending_payload(row))
        return row

    def shrink_hold(self, locked: LockedCustomer, row: dict[str, Any], points_minor: int) -> None:
        """Take ``points_minor`` off a pending credit (all of them cancels it)."""
        if points_minor >= row["points_minor"]:
            self.finish_pending(locked, row, "cancelled", None)
            return
        row["points_minor"] -= points_minor
        locked.pending_points_minor -= points_minor
        locked.touched = True
        if row["id"] not in self.plan.lifecycle.new_pending:
            self.plan.lifecycle.pending_shrinks.append(
                (locked.merchant_id, row["id"], row["points_minor"])
            )
        self.event(locked.merchant_id, "pending_points.reduced", row["id"], pending_payload(row))

    def named_pending(
        self, pending_id: uuid.UUID, locked: LockedCustomer, action: str
    ) -> dict[str, Any]:
        row = self.times.pending.get((locked.merchant_id, pending_id))
        if row is None or row["customer_id"] != locked.customer_id:
            raise PendingCreditNotFoundError(
                f"No pending credit {str(pending_id)!r} for this customer.", {"id": str(pending_id)}
            )
        if row["status"] != "pending":
            raise InvalidPendingStateError(
                f"A pending credit that is {row['status']!r} cannot be {action}led; "
                "only pending ones can."
                if action == "cancel"
                else f"A pending credit that is {row['status']!r} cannot be released again.",
                {"status": row["status"], "action": action},
            )
        return row

    def release(self, locked: LockedCustomer, row: dict[str, Any]) -> dict[str, Any]:
        transaction = self.post(
            locked,
            _Posting(
                points_minor=row["points_minor"],
                kind=row["kind"],
                description=row["description"],
                internal_note=row["internal_note"],
                visible_to_customer=row["visible_to_customer"],
                apply_to_lifetime=row["apply_to_lifetime"],
                expires_at=row["expires_at"],
                earn_rule_id=row["earn_rule_id"],
            ),
        )
        self.finish_pending(locked, row, "released", transaction.transaction_id)
        return row

    def finish_pending(
        self,
        locked: LockedCustomer,
        row: dict[str, Any],
        status: str,
        transaction_id: uuid.UUID | None,
    ) -> None:
        row["status"] = status
        row["transaction_id"] = transaction_id
        row["released_at" if status == "released" else "cancelled_at"] = self.now
        locked.pending_points_minor -= row["points_minor"]
        invariant(locked.pending_points_minor >= 0, "pending points never go negative")
        locked.touched = True
        if row["id"] not in self.plan.lifecycle.new_pending:
            # (A hold of this batch is inserted as it ends up.)
            self.plan.lifecycle.pending_updates.append(
                (locked.merchant_id, row["id"], status, transaction_id, self.now)
            )
        self.event(locked.merchant_id, f"pending_points.{status}", row["id"], pending_payload(row))

    # Orders and refunds ----------------------------------------------------------

    def apply_order(self, operation: order_ops.OrderOperation, locked: LockedCustomer) -> Outcome:
        if isinstance(operation, order_ops.PlaceOrder):
            return self.place_order(operation, locked)
        return self.refund_order(operation, locked)

    def place_order(self, operation: order_ops.PlaceOrder, locked: LockedCustomer) -> Outcome:
        key = (locked.merchant_id, operation.order_id)
        existing = self.orders.orders.get(key)
        if existing is not None:
            if (
                existing["fingerprint"] != operation.fingerprint
                or existing["customer_id"] != locked.customer_id
            ):
                raise order_ops.OrderConflictError(
                    "An order with this order_id was already posted with other content.",
                    {"order_id": operation.order_id},
                )
            return Outcome(200, order_reply(existing, locked))  # posted again: no effect
        rule = self.orders.rules.get(locked.merchant_id)
        multiplier = 100
        if locked.tier_id is not None:
            for tier in self.times.tiers.get(locked.merchant_id, []):
                if tier.id == locked.tier_id:
                    multiplier = tier.multiplier_hundredths
        points, reason = order_ops.purchase_points(rule, locked, operation.total_minor, multiplier)
        row = order_ops.new_order_row(
            operation,
            locked,
            order_row_id=new_id(),
            encoded_codes=_encoder.encode(list(operation.discount_codes)).decode(),
            now=self.now,
        )
        row["not_earned_reason"] = reason
        if points > 0:
            assert rule is not None
            posting = _Posting(
                points_minor=points,
                kind="earn",
                description=f"Order {operation.order_id}"[: redemptions.DESCRIPTION_CHARS_MAX],
                apply_to_lifetime=True,
                earn_rule_id=rule.id,
            )
            row.update(points_earned_minor=points, earn_rule_id=rule.id)
            if rule.pending_days:
                available_at = self.now + timedelta(days=rule.pending_days)
                row["pending_id"] = self.new_hold(locked, posting, available_at)["id"]
            else:
                row["transaction_id"] = self.post(locked, posting).transaction_id
        locked.total_spent_minor += operation.total_minor
        lifecycle.add_to_window(
            self.times, locked, "amount_spent", operation.total_minor, operation.placed_at, self.now
        )
        self.plan.orders.spend[(locked.merchant_id, locked.customer_id)] += operation.total_minor
        locked.touched = True
        for code in operation.discount_codes:
            self.use_code(locked, code, operation.order_id)
        self.complete_referral(locked, operation.order_id)
        self.orders.orders[key] = row
        self.plan.orders.inserts.append(row)
        self.plan.orders.new_orders.add(key)
        self.event(locked.merchant_id, "order.placed", row["id"], order_payload(row, locked))
        return Outcome(201, order_reply(row, locked))

    def complete_referral(self, referee: LockedCustomer, order_id: str) -> None:
        """A referred customer's first order completes its referral: both are rewarded."""
        if referee.referred_by is None or referee.referral_completed_at is not None:
            return
        referrer = self.by_uuid.get((referee.merchant_id, referee.referred_by))
        if referrer is None:
            return  # not locked by this batch (it was referred meanwhile): the next order
        referee.referral_completed_at = self.now
        referee.touched = referrer.touched = True
        completed_before = referrer.referred_completed
        referrer.referred_completed += 1
        self.plan.orders.referrals.append(
            (referee.merchant_id, referee.customer_id, referrer.customer_id)
        )
        rule = self.orders.referral_rules.get(referee.merchant_id)
        rewarded = {"referee": 0, "referrer": 0}
        if rule is not None and rule.active:
            if referee.status == "active" and rule.referee_points_minor > 0:
                self.post(
                    referee,
                    _Posting(
                        points_minor=rule.referee_points_minor,
                        kind="earn",
                        description="Referral reward: welcome",
                        apply_to_lifetime=True,
                        earn_rule_id=rule.id,
                    ),
                )
                rewarded["referee"] = rule.referee_points_minor
            limit = rule.max_per_customer
            if (
                referrer.status == "active"
                and rule.points_minor > 0
                and (limit is None or completed_before < limit)
            ):
                self.post(
                    referrer,
                    _Posting(
                        points_minor=rule.points_minor,
                        kind="earn",
                        description="Referral reward: a friend's first order",
                        apply_to_lifetime=True,
                        earn_rule_id=rule.id,
                    ),
                )
                rewarded["referrer"] = rule.points_minor
        self.event(
            referee.merchant_id,
            "referral.completed",
            referee.customer_id,
            _encoder.encode(
                {
                    "referee_customer_id": referee.external_id,
                    "referrer_customer_id": referrer.external_id,
                    "order_id": order_id,
                    "referee_points": format_points(rewarded["referee"]),
                    "referrer_points": format_points(rewarded["referrer"]),
                    "referred_completed": referrer.referred_completed,
                }
            ).decode(),
        )

    def use_code(self, locked: LockedCustomer, code: str, order_id: str) -> None:
        """Mark the customer reward behind a discount code used (if it is still active)."""
        held = self.orders.codes.get((locked.merchant_id, code))
        if held is None or effective_status(held["status"], held["expires_at"], self.now) != ACTIVE:
            return
        held.update(status="used", used_at=self.now, order_id=order_id, updated_at=self.now)
        self.plan.orders.rewards_used.append((locked.merchant_id, held["id"], order_id))
        detail = to_detail(held, locked.external_id, self.now)
        self.event(
            locked.merchant_id,
            "customer_reward.used",
            held["id"],
            redemptions.event_payload(detail),
        )

    def refund_order(self, operation: order_ops.RefundOrder, locked: LockedCustomer) -> Outcome:
        key = (locked.merchant_id, operation.order_id)
        row = self.orders.orders.get(key)
        if row is None or row["customer_id"] != locked.customer_id:
            raise order_ops.OrderNotFoundError(
                f"No order {operation.order_id!r}.", {"order_id": operation.order_id}
            )
        refundable = row["total_minor"] - row["refunded_minor"]
        amount = refundable if operation.amount_minor is None else operation.amount_minor
        if amount > refundable or amount == 0:
            raise order_ops.RefundExceedsOrderError(
                "The refund is larger than what is left to refund on this order."
                if refundable
                else "This order is already fully refunded.",
                {"refundable": format_points(refundable), "amount": format_points(amount)},
            )
        refunded_after = row["refunded_minor"] + amount
        target = order_ops.points_to_take_back(row, refunded_after, locked.points_decimals)
        to_take = target - row["points_removed_minor"]
        removed = cancelled = shortfall = 0
        transaction_id: uuid.UUID | None = None
        if to_take > 0:
            hold = None
            if row["pending_id"] is not None:
                hold = self.times.pending.get((locked.merchant_id, row["pending_id"]))
            if hold is not None and hold["status"] == "pending":
                cancelled = min(to_take, hold["points_minor"])
                self.shrink_hold(locked, hold, cancelled)
            elif hold is None or hold["status"] == "released":
                removed = min(to_take, locked.points_balance_minor)
                shortfall = to_take - removed
                if removed:
                    transaction_id = self.post(
                        locked,
                        _Posting(
                            points_minor=-removed,
                            kind="refund",
                            description=f"Points removed: order {operation.order_id} refunded"[
                                : redemptions.DESCRIPTION_CHARS_MAX
                            ],
                            apply_to_lifetime=True,
                            earn_rule_id=row["earn_rule_id"],
                        ),
                    ).transaction_id
        row.update(
            refunded_minor=refunded_after,
            points_removed_minor=target,
            status="refunded" if refunded_after == row["total_minor"] else "partially_refunded",
            updated_at=self.now,
        )
        self.plan.orders.changed(key, row)
        locked.total_spent_minor -= amount
        lifecycle.add_to_window(
            self.times, locked, "amount_spent", -amount, row["placed_at"], self.now
        )
        self.plan.orders.spend[(locked.merchant_id, locked.customer_id)] -= amount
        locked.touched = True
        refund: dict[str, Any] = {
            "merchant_id": locked.merchant_id,
            "id": new_id(),
            "order_row_id": row["id"],
            "amount_minor": amount,
            "points_removed_minor": removed,
            "points_cancelled_minor": cancelled,
            "shortfall_minor": shortfall,
            "transaction_id": transaction_id,
            "created_at": self.now,
        }
        self.plan.orders.refunds.append(refund)
        self.event(
            locked.merchant_id,
            "order.refunded",
            row["id"],
            _encoder.encode(
                {"refund": refund_view(refund, row, locked), "order": order_view(row, locked)}
            ).decode(),
        )
        return Outcome(201, refund_reply(refund, row, locked))

    # Customer actions -----------------------------------------------------------

    def reward_action(self, action: str, locked: LockedCustomer) -> Outcome:
        rule = self.action_context.rules.get((locked.merchant_id, action))
        reason = None
        if rule is None:
            reason = "no_rule"
        elif not rule.active:
            reason = "rule_inactive"
        elif locked.status != "active":
            reason = f"customer_{locked.status}"
        else:
            limit = actions.limit_of(rule, action)
            key = (locked.merchant_id, locked.customer_id, action)
            if limit is not None and self.action_context.counts.get(key, 0) >= limit:
                reason = "limit_reached"
        if reason is not None or rule is None:
            return Outcome(200, action_reply(action, False, reason, 0, None, None, locked))
        transaction = self.post(
            locked,
            _Posting(
                points_minor=rule.points_minor,
                kind="earn",
                description=actions.DESCRIPTIONS.get(action, "Reward"),
                apply_to_lifetime=True,
                earn_rule_id=rule.id,
            ),
        )
        key = (locked.merchant_id, locked.customer_id, action)
        self.action_context.counts[key] = self.action_context.counts.get(key, 0) + 1
        row = {
            "merchant_id": locked.merchant_id,
            "id": new_id(),
            "customer_id": locked.customer_id,
            "action": action,
            "earn_rule_id": rule.id,
            "points_minor": rule.points_minor,
            "transaction_id": transaction.transaction_id,
            "created_at": self.now,
        }
        self.plan.actions.inserts.append(row)
        rewarded = set(msgspec.json.decode(locked.rewarded_actions))
        if action not in rewarded:
            locked.rewarded_actions = _encoder.encode(sorted(rewarded | {action})).decode()
            self.plan.actions.rewarded[(locked.merchant_id, locked.customer_id)] = (
                locked.rewarded_actions
            )
        reply = action_reply(
            action, True, None, rule.points_minor, transaction.transaction_id, rule.id, locked
        )
        self.event(
            locked.merchant_id,
            "customer.action_rewarded",
            locked.customer_id,
            _encoder.encode(
                {"customer_id": locked.external_id, **msgspec.json.decode(reply)}
            ).decode(),
        )
        return Outcome(201, reply)

    def settle(self, locked: LockedCustomer) -> None:
        """After the customer's last movement: lots to write, tier to recompute."""
        lifecycle.settle_lots(self.times, locked, self.plan.lifecycle)
        tiers = self.times.tiers.get(locked.merchant_id, [])
        window = self.times.windows.get((locked.merchant_id, locked.customer_id))
        change = lifecycle.recompute_tier(locked, tiers, window, self.now)
        if change is None:
            return
        upgrade = change.previous is None or (
            change.current is not None
            and change.current.threshold_minor > change.previous.threshold_minor
        )
        self.event(
            locked.merchant_id,
            "customer.tier_changed",
            locked.customer_id,
            _encoder.encode(
                {
                    "customer_id": locked.external_id,
                    "previous_tier": lifecycle.tier_ref(change.previous),
                    "tier": lifecycle.tier_ref(change.current),
                    "direction": "upgrade" if upgrade else "downgrade",
                    "basis": locked.tier_basis,
                    "basis_value": format_points(change.basis_minor),
                }
            ).decode(),
        )


def pending_view(row: Mapping[str, Any]) -> PendingCredit:
    return PendingCredit(
        id=row["id"],
        customer_id=row["customer_id"],
        points=format_points(row["points_minor"]),
        kind=row["kind"],
        description=row["description"],
        internal_note=row["internal_note"],
        visible_to_customer=row["visible_to_customer"],
        apply_to_lifetime=row["apply_to_lifetime"],
        expires_at=row["expires_at"],
        status=row["status"],
        available_at=row["available_at"],
        transaction_id=row["transaction_id"],
        earn_rule_id=row["earn_rule_id"],
        released_at=row["released_at"],
        cancelled_at=row["cancelled_at"],
        created_at=row["created_at"],
    )


def pending_payload(row: dict[str, Any]) -> str:
    return _encoder.encode({"pending_credit": pending_view(row)}).decode()


def pending_reply(row: dict[str, Any], locked: LockedCustomer) -> bytes:
    return _encoder.encode(
        PendingCreditEnvelope(
            data=PendingCreditMovement(
                **msgspec.structs.asdict(pending_view(row)),
                points_balance=format_points(locked.points_balance_minor),
                pending_points=format_points(locked.pending_points_minor),
            )
        )
    )


def release_reply(rows: list[dict[str, Any]], locked: LockedCustomer) -> bytes:
    return _encoder.encode(
        PendingReleaseEnvelope(
            data=PendingRelease(
                released=[pending_view(row) for row in rows],
                points_balance=format_points(locked.points_balance_minor),
                pending_points=format_points(locked.pending_points_minor),
            )
        )
    )


def resolve_followers(plan: Plan) -> list[Outcome]:
    """Every outcome, duplicates inside the batch replaying their leader's."""
    outcomes: list[Outcome] = []
    for index, outcome in enumerate(plan.outcomes):
        if outcome is None:
            leader = plan.outcomes[plan.followers[index]]
            assert leader is not None
            # A leader refused before it ran (validation) stored nothing to replay.
            replayed = plan.followers[index] not in plan.unstored
            outcome = Outcome(leader.status_code, leader.body, replayed=replayed)
        outcomes.append(outcome)
    return outcomes


def order_view(row: Mapping[str, Any], locked: LockedCustomer) -> Order:
    return Order(
        id=row["id"],
        order_id=row["order_id"],
        customer_id=locked.external_id,
        total=format_points(row["total_minor"]),
        currency=row["currency"],
        discount_codes=msgspec.json.decode(row["discount_codes"]),
        status=row["status"],
        refunded=format_points(row["refunded_minor"]),
        points_earned=format_points(row["points_earned_minor"]),
        points_removed=format_points(row["points_removed_minor"]),
        pending_credit_id=row["pending_id"],
        transaction_id=row["transaction_id"],
        earn_rule_id=row["earn_rule_id"],
        not_earned_reason=row["not_earned_reason"],
        placed_at=row["placed_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def order_payload(row: Mapping[str, Any], locked: LockedCustomer) -> str:
    return _encoder.encode({"order": order_view(row, locked)}).decode()


def order_reply(row: Mapping[str, Any], locked: LockedCustomer) -> bytes:
    return _encoder.encode(
        OrderEnvelope(
            data=OrderResult(
                **msgspec.structs.asdict(order_view(row, locked)),
                points_balance=format_points(locked.points_balance_minor),
                pending_points=format_points(locked.pending_points_minor),
            )
        )
    )


def refund_view(
    refund: Mapping[str, Any], row: Mapping[str, Any], locked: LockedCustomer
) -> Refund:
    return Refund(
        id=refund["id"],
        order_id=row["order_id"],
        amount=format_points(refund["amount_minor"]),
        points_removed=format_points(refund["points_removed_minor"]),
        points_cancelled=format_points(refund["points_cancelled_minor"]),
        shortfall=format_points(refund["shortfall_minor"]),
        transaction_id=refund["transaction_id"],
        created_at=refund["created_at"],
        order=order_view(row, locked),
    )


def refund_reply(
    refund: Mapping[str, Any], row: Mapping[str, Any], locked: LockedCustomer
) -> bytes:
    return _encoder.encode(
        RefundEnvelope(
            data=RefundResult(
                **msgspec.structs.asdict(refund_view(refund, row, locked)),
                points_balance=format_points(locked.points_balance_minor),
                pending_points=format_points(locked.pending_points_minor),
            )
        )
    )


def action_reply(
    action: str,
    rewarded: bool,
    reason: str | None,
    points_minor: int,
    transaction_id: uuid.UUID | None,
    earn_rule_id: uuid.UUID | None,
    locked: LockedCustomer,
) -> bytes:
    return _encoder.encode(
        ActionEnvelope(
            data=ActionResult(
                action=action,
                rewarded=rewarded,
                reason=reason,
                points=format_points(points_minor),
                transaction_id=transaction_id,
                earn_rule_id=earn_rule_id,
                points_balance=format_points(locked.points_balance_minor),
            )
        )
    )
