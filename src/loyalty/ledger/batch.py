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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from loyalty.customers.service import CustomerRef, customer_not_found
from loyalty.errors import LoyaltyError, ValidationFailedError, invariant
from loyalty.ids import new_id
from loyalty.ledger import redemptions
from loyalty.ledger.errors import (
    BalanceLimitExceededError,
    IdempotencyKeyReusedError,
    IdempotencyRequestInProgressError,
    InsufficientPointsError,
)
from loyalty.ledger.schemas import Transaction, TransactionEnvelope
from loyalty.points import BALANCE_MINOR_MAX, MINOR_PER_POINT, format_points
from loyalty.rewards.customer_rewards import to_detail

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
    initial_sequence: int = 0
    touched: bool = False

    def __post_init__(self) -> None:
        self.initial_sequence = self.last_sequence


@dataclass(slots=True)
class Plan:
    outcomes: list[Outcome | None]
    # Rows: (merchant_id, customer_id, balance, lifetime, spent, expired, sequence,
    # previous_sequence); entries and events as dictionaries of column values.
    balance_updates: list[tuple[uuid.UUID, uuid.UUID, int, int, int, int, int, int]] = field(
        default_factory=list
    )
    entries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    key_updates: list[tuple[uuid.UUID, str, int, str]] = field(default_factory=list)
    key_deletes: list[KeyRef] = field(default_factory=list)
    # Later duplicates of a key inside the batch answer with the first one's outcome.
    followers: dict[int, int] = field(default_factory=dict)
    # Movements whose outcome is not stored under their key (refused before running).
    unstored: set[int] = field(default_factory=set)
    rewards: redemptions.RewardWrites = field(default_factory=redemptions.RewardWrites)


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
        if movement.customer.customer_id is not None:
            by_id.add((movement.merchant_id, movement.customer.customer_id))
        elif movement.customer.customer_email is not None:
            by_email.add((movement.merchant_id, movement.customer.customer_email))
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
) -> Plan:
    """Decide every movement in arrival order and collect the writes."""
    plan = Plan(outcomes=[None] * len(movements))
    context = rewards if rewards is not None else redemptions.RewardContext()
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
            outcome = _apply(plan, movement, customers.get(movement.customer_key), now, context)
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
            plan.balance_updates.append(
                (
                    locked.merchant_id,
                    locked.customer_id,
                    locked.points_balance_minor,
                    locked.lifetime_points_minor,
                    locked.points_spent_minor,
                    locked.points_expired_minor,
                    locked.last_sequence,
                    locked.initial_sequence,
                )
            )
    return plan


def _apply(
    plan: Plan,
    movement: Movement,
    locked: LockedCustomer | None,
    now: datetime,
    context: redemptions.RewardContext,
) -> Outcome:
    if locked is None:
        raise customer_not_found(movement.customer)
    prepared: redemptions.Prepared | None = None
    points_minor = movement.points_minor
    if movement.reward is not None:
        # The reward's cost was checked against the precision when it was set.
        prepared = redemptions.prepare(movement, locked, context, now)
        points_minor = prepared.points_minor
    else:
        _check_precision(movement, locked.points_decimals)
    invariant(points_minor != 0, "a movement moves points")
    balance_after = locked.points_balance_minor + points_minor
    if balance_after < 0:
        raise InsufficientPointsError(
            "The customer does not have enough points for this debit."
            if prepared is None
            else "The customer does not have enough points for this reward.",
            {
                "points_balance": format_points(locked.points_balance_minor),
                "points_requested": format_points(-points_minor),
            },
        )
    if balance_after > BALANCE_MINOR_MAX:
        raise BalanceLimitExceededError(
            "This credit would take the balance past the largest balance allowed.",
            {"points_balance_max": format_points(BALANCE_MINOR_MAX)},
        )
    lifetime_delta = 0
    if movement.apply_to_lifetime:
        # Removing earned points lowers lifetime, but never below zero.
        lifetime_delta = max(points_minor, -locked.lifetime_points_minor)
    locked.points_balance_minor = balance_after
    locked.lifetime_points_minor += lifetime_delta
    if movement.kind in ("redeem", "revert"):
        # Spent is net of refunded redemptions.
        locked.points_spent_minor -= points_minor
    if movement.kind == "expire":
        locked.points_expired_minor -= points_minor
    locked.last_sequence += 1
    locked.touched = True
    if prepared is not None:
        description = prepared.description
    else:
        description = movement.description or locked.default_description
    entry_id = new_id()
    plan.entries.append(
        {
            "merchant_id": movement.merchant_id,
            "id": entry_id,
            "customer_id": locked.customer_id,
            "sequence": locked.last_sequence,
            "points_minor": points_minor,
            "kind": movement.kind,
            "description": description,
            "internal_note": movement.internal_note,
            "visible_to_customer": movement.visible_to_customer,
            "apply_to_lifetime": movement.apply_to_lifetime,
            "lifetime_delta_minor": lifetime_delta,
            "balance_after_minor": balance_after,
            "expires_at": movement.expires_at,
            "created_at": now,
        }
    )
    transaction = Transaction(
        transaction_id=entry_id,
        customer_id=locked.customer_id,
        points=format_points(points_minor),
        type="credit" if points_minor > 0 else "debit",
        kind=movement.kind,
        description=description,
        internal_note=movement.internal_note,
        visible_to_customer=movement.visible_to_customer,
        apply_to_lifetime=movement.apply_to_lifetime,
        points_balance=format_points(balance_after),
        sequence=locked.last_sequence,
        expires_at=movement.expires_at,
        created_at=now,
    )
    plan.events.append(
        {
            "merchant_id": movement.merchant_id,
            "id": new_id(),
            "type": "transaction.created",
            "subject_id": locked.customer_id,
            "payload": _encoder.encode(
                {
                    "transaction": transaction,
                    "lifetime_points": format_points(locked.lifetime_points_minor),
                }
            ).decode(),
            "created_at": now,
        }
    )
    if prepared is None:
        return Outcome(201, _encoder.encode(TransactionEnvelope(data=transaction)))
    event_type, row = redemptions.apply(
        prepared, plan.rewards, context, locked, transaction_id=entry_id, now=now
    )
    detail = to_detail(row, locked.external_id, now)
    plan.events.append(
        {
            "merchant_id": movement.merchant_id,
            "id": new_id(),
            "type": event_type,
            "subject_id": row["id"],
            "payload": redemptions.event_payload(detail),
            "created_at": now,
        }
    )
    status_code = 201 if prepared.reward is not None else 200
    return Outcome(status_code, redemptions.reply(detail, balance_after))


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
