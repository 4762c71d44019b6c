"""What a batch reads, organised by table: the requests (``Prefetch``) and the rows
read (``Snapshot``).

Reading happens before deciding, in rounds: every operation of the batch says
which rows it needs (``Operation.prefetch``), the store reads the ones not
read yet, and the rounds stop when no operation needs anything new (a refund
needs its order before it knows the order's hold). Deciding then reads only
through the snapshot, and a row that no operation asked for is a programmer
error (``NotPrefetchedError``), never a silent "not found".
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Generic, TypeVar

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.rows import (
    CustomerId,
    CustomerRewardRow,
    EarnRuleRow,
    LockedCustomer,
    LotRow,
    OrderRow,
    PendingRow,
    RewardRow,
    RowKey,
    TierRow,
    WindowRow,
)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")

RedeemedKey = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # (merchant, customer, reward)
# (merchant, customer, action, counted since: None for ever)
ActionCountKey = tuple[uuid.UUID, uuid.UUID, str, datetime | None]
# (merchant, customer, basis, window days)
WindowKey = tuple[uuid.UUID, uuid.UUID, str, int]


class NotPrefetchedError(Exception):
    """A batch read a row no operation asked for: a bug in an operation's prefetch."""


class Table(Generic[K, R]):
    """One table's rows as read for the batch: ``requested`` keys, the ``rows`` found."""

    __slots__ = ("name", "requested", "rows")

    def __init__(self, name: str) -> None:
        self.name = name
        self.requested: set[K] = set()
        self.rows: dict[K, R] = {}

    def get(self, key: K) -> R | None:
        """The row, or None when the database has none; raises when never asked for."""
        if key not in self.requested:
            raise NotPrefetchedError(f"{self.name} {key!r} was not prefetched")
        return self.rows.get(key)

    def peek(self, key: K) -> R | None:
        """While prefetching: the row if it was read already."""
        return self.rows.get(key)

    def found(self, key: K, row: R) -> None:
        """A row the store read (or the batch created)."""
        self.requested.add(key)
        self.rows[key] = row

    def values(self) -> Iterator[R]:
        return iter(self.rows.values())


@dataclasses.dataclass(slots=True)
class Prefetch:
    """Rows to read, by table (keys always start with the merchant)."""

    rewards: set[RowKey] = dataclasses.field(default_factory=set)
    redeemed: set[RedeemedKey] = dataclasses.field(default_factory=set)
    customer_rewards: set[RowKey] = dataclasses.field(default_factory=set)  # locked
    reward_codes: set[tuple[uuid.UUID, str]] = dataclasses.field(default_factory=set)  # locked
    orders: set[tuple[uuid.UUID, str]] = dataclasses.field(default_factory=set)
    earn_rules: set[tuple[uuid.UUID, str]] = dataclasses.field(default_factory=set)
    action_counts: set[ActionCountKey] = dataclasses.field(default_factory=set)
    pending: set[RowKey] = dataclasses.field(default_factory=set)
    pending_of: set[CustomerId] = dataclasses.field(default_factory=set)
    # Every live (active or inactive) customer reward of a customer, locked.
    rewards_of: set[CustomerId] = dataclasses.field(default_factory=set)
    lots: set[CustomerId] = dataclasses.field(default_factory=set)
    tiers: set[uuid.UUID] = dataclasses.field(default_factory=set)
    windows: set[WindowKey] = dataclasses.field(default_factory=set)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in dataclasses.fields(self))

    def new_for(self, snapshot: Snapshot) -> Prefetch:
        """The requests the snapshot has not read yet."""
        new = Prefetch()
        for f in dataclasses.fields(self):
            table: Table[object, object] = getattr(snapshot, f.name)
            wanted: set[object] = getattr(self, f.name)
            if f.name == "windows":
                fresh = {w for w in self.windows if (w[0], w[1]) not in snapshot.windows.requested}
                new.windows = fresh
            else:
                setattr(new, f.name, {key for key in wanted if key not in table.requested})
        return new


@dataclasses.dataclass(slots=True)
class Snapshot:
    """The batch's locked customers and every row read for it, by table."""

    customers: list[LockedCustomer]
    # The batch's clock: what is due, what a rolling window counts.
    now: datetime
    rewards: Table[RowKey, RewardRow] = dataclasses.field(default_factory=lambda: Table("rewards"))
    redeemed: Table[RedeemedKey, int] = dataclasses.field(
        default_factory=lambda: Table("redemption counts")
    )
    customer_rewards: Table[RowKey, CustomerRewardRow] = dataclasses.field(
        default_factory=lambda: Table("customer_rewards")
    )
    reward_codes: Table[tuple[uuid.UUID, str], CustomerRewardRow] = dataclasses.field(
        default_factory=lambda: Table("customer_rewards by discount code")
    )
    orders: Table[tuple[uuid.UUID, str], OrderRow] = dataclasses.field(
        default_factory=lambda: Table("orders")
    )
    earn_rules: Table[tuple[uuid.UUID, str], EarnRuleRow] = dataclasses.field(
        default_factory=lambda: Table("earn_rules")
    )
    action_counts: Table[ActionCountKey, int] = dataclasses.field(
        default_factory=lambda: Table("customer_actions counts")
    )
    pending: Table[RowKey, PendingRow] = dataclasses.field(
        default_factory=lambda: Table("pending_credits")
    )
    # A customer's key is requested once every pending credit of it is in ``pending``.
    pending_of: Table[CustomerId, bool] = dataclasses.field(
        default_factory=lambda: Table("pending_credits of a customer")
    )
    # A customer's key is requested once every live reward of it is in ``customer_rewards``.
    rewards_of: Table[CustomerId, bool] = dataclasses.field(
        default_factory=lambda: Table("live customer_rewards of a customer")
    )
    lots: Table[CustomerId, list[LotRow]] = dataclasses.field(
        default_factory=lambda: Table("point_lots")
    )
    tiers: Table[uuid.UUID, list[TierRow]] = dataclasses.field(
        default_factory=lambda: Table("tiers")
    )
    windows: Table[CustomerId, WindowRow] = dataclasses.field(
        default_factory=lambda: Table("tier windows")
    )
    by_ref: dict[tuple[uuid.UUID, str, str], LockedCustomer] = dataclasses.field(
        default_factory=dict
    )
    by_id: dict[CustomerId, LockedCustomer] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for customer in self.customers:
            self.by_id[customer.key] = customer
            if customer.external_id is not None:
                self.by_ref[(customer.merchant_id, "id", customer.external_id)] = customer
            if customer.email is not None:
                self.by_ref[(customer.merchant_id, "email", customer.email)] = customer

    def customer(self, merchant_id: uuid.UUID, ref: CustomerRef) -> LockedCustomer | None:
        """The locked customer a reference names (None: no such customer)."""
        if ref.customer_id is not None:
            return self.by_ref.get((merchant_id, "id", ref.customer_id))
        if ref.customer_email is not None:
            return self.by_ref.get((merchant_id, "email", ref.customer_email))
        if ref.internal_id is not None:
            return self.by_id.get((merchant_id, ref.internal_id))
        return None

    def forget_identity(self, customer: LockedCustomer) -> None:
        """The customer no longer answers to its platform id and email (it is being
        erased): later movements of the batch that name it so find no customer."""
        for kind, value in (("id", customer.external_id), ("email", customer.email)):
            if (
                value is not None
                and self.by_ref.get((customer.merchant_id, kind, value)) is customer
            ):
                del self.by_ref[(customer.merchant_id, kind, value)]
        customer.external_id = None
        customer.email = None

    def customer_reward_found(self, key: tuple[uuid.UUID, str], row: CustomerRewardRow) -> None:
        """A customer reward read by its code: one object whichever way it is named."""
        known = self.customer_rewards.peek((row.merchant_id, row.id))
        if known is None:
            self.customer_rewards.found((row.merchant_id, row.id), row)
            known = row
        self.reward_codes.found(key, known)

    def live_reward_found(self, row: CustomerRewardRow) -> None:
        """One of a customer's live rewards (``rewards_of``): one object however it was read."""
        if self.customer_rewards.peek((row.merchant_id, row.id)) is None:
            self.customer_rewards.found((row.merchant_id, row.id), row)

    def lot_found(self, lot: LotRow) -> None:
        """One of a customer's lots, as read (its stored rest is what it holds)."""
        lot.stored_remaining_minor = lot.remaining_minor
        lots = self.lots.peek((lot.merchant_id, lot.customer_id))
        if lots is None:
            self.lots.found((lot.merchant_id, lot.customer_id), [lot])
        else:
            lots.append(lot)

    def tier_found(self, tier: TierRow) -> None:
        """One of a programme's tiers (read in ascending thresholds)."""
        tiers = self.tiers.peek(tier.merchant_id)
        if tiers is None:
            self.tiers.found(tier.merchant_id, [tier])
        else:
            tiers.append(tier)

    def pending_found(self, row: PendingRow) -> None:
        key = (row.merchant_id, row.id)
        if self.pending.peek(key) is None:
            self.pending.found(key, row)
        self.pending.requested.add(key)

    def mark_read(self, request: Prefetch) -> None:
        """After the store read ``request``: absent rows are known absent."""
        for f in dataclasses.fields(request):
            table: Table[object, object] = getattr(self, f.name)
            if f.name == "windows":
                table.requested.update((w[0], w[1]) for w in request.windows)
            else:
                table.requested.update(getattr(request, f.name))
        for key in request.lots:
            if self.lots.peek(key) is None:
                self.lots.found(key, [])
        for merchant_id in request.tiers:
            if self.tiers.peek(merchant_id) is None:
                self.tiers.found(merchant_id, [])
