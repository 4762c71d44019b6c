"""What a batch writes, organised by table (as TigerBeetle commits per storage tree).

Operations never write: they change rows through ``BatchTx``, which records
here each row to insert or update once. The store applies every table's
changes in one transaction and checks that each write touched exactly the
rows it names (``expected_counts``), the same checks on every database.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Generic, TypeVar

from loyalty.ledger.engine.rows import (
    ActionRow,
    CustomerRewardRow,
    EntryRow,
    ErasureRow,
    EventRow,
    KeyRef,
    LockedCustomer,
    LotRow,
    OrderRow,
    PendingRow,
    RefundRow,
)

R = TypeVar("R")

# The daily rollups' metrics (loyalty.dashboard reads them): entries by kind
# ('entry:<kind>'), members enrolled and erased, points held as pending.
ENTRY_METRIC_PREFIX = "entry:"
MEMBERS_METRIC = "members"
PENDING_METRIC = "pending"
# Rows each merchant's day and metric is spread over, so that concurrent batches
# of one merchant rarely wait for each other's rollup row.
ROLLUP_SHARDS = 8


class Rollup:
    """What a batch adds to one merchant's metric today: ``plus``, ``minus``, ``count``."""

    __slots__ = ("count", "minus", "plus")

    def __init__(self) -> None:
        self.plus = 0
        self.minus = 0
        self.count = 0


class RowChanges(Generic[R]):
    """A table's rows to insert (``new``) and to update (``changed``), each once.

    A row created by this batch is inserted as it ends up, never also updated."""

    __slots__ = ("_seen", "changed", "new")

    def __init__(self) -> None:
        self.new: list[R] = []
        self.changed: list[R] = []
        self._seen: set[int] = set()

    def insert(self, row: R) -> None:
        self.new.append(row)
        self._seen.add(id(row))

    def update(self, row: R) -> None:
        if id(row) not in self._seen:
            self._seen.add(id(row))
            self.changed.append(row)

    def __bool__(self) -> bool:
        return bool(self.new or self.changed)


@dataclasses.dataclass(slots=True)
class Changes:
    # customer_balances (every touched customer) and customers (their ledger columns)
    balances: list[LockedCustomer] = dataclasses.field(default_factory=list)
    customers: list[LockedCustomer] = dataclasses.field(default_factory=list)
    entries: list[EntryRow] = dataclasses.field(default_factory=list)
    events: list[EventRow] = dataclasses.field(default_factory=list)
    # idempotency_keys: (merchant_id, key, status, body) stored; keys released
    keys_stored: list[tuple[uuid.UUID, str, int, str]] = dataclasses.field(default_factory=list)
    keys_released: list[KeyRef] = dataclasses.field(default_factory=list)
    customer_rewards: RowChanges[CustomerRewardRow] = dataclasses.field(default_factory=RowChanges)
    pending: RowChanges[PendingRow] = dataclasses.field(default_factory=RowChanges)
    orders: RowChanges[OrderRow] = dataclasses.field(default_factory=RowChanges)
    lots_new: list[LotRow] = dataclasses.field(default_factory=list)
    lots_changed: list[LotRow] = dataclasses.field(default_factory=list)
    lots_closed: list[LotRow] = dataclasses.field(default_factory=list)
    refunds: list[RefundRow] = dataclasses.field(default_factory=list)
    actions: list[ActionRow] = dataclasses.field(default_factory=list)
    # Customers erased (their profile, identity and past events), after every other write.
    erasures: list[ErasureRow] = dataclasses.field(default_factory=list)
    # daily_rollups: what this batch adds, by (merchant_id, metric), on the batch's day.
    rollups: dict[tuple[uuid.UUID, str], Rollup] = dataclasses.field(default_factory=dict)

    def count(self, merchant_id: uuid.UUID, metric: str, amount: int) -> None:
        """Count ``amount`` (positive: plus, negative: minus) in the merchant's rollup."""
        rollup = self.rollups.get((merchant_id, metric))
        if rollup is None:
            rollup = self.rollups[(merchant_id, metric)] = Rollup()
        if amount >= 0:
            rollup.plus += amount
        else:
            rollup.minus -= amount
        rollup.count += 1

    def rollup_rows(self) -> list[tuple[uuid.UUID, str, int, int, int]]:
        """(merchant_id, metric, plus, minus, count), in one fixed order (the order
        concurrent batches lock rollup rows in, so they never deadlock)."""
        return sorted(
            (merchant_id, metric, r.plus, r.minus, r.count)
            for (merchant_id, metric), r in self.rollups.items()
        )

    @property
    def beyond_the_ledger(self) -> bool:
        """Anything besides balances, entries, events and keys (the hot path's tables)."""
        return bool(
            self.customers
            or self.customer_rewards
            or self.pending
            or self.orders
            or self.lots_new
            or self.lots_changed
            or self.lots_closed
            or self.refunds
            or self.actions
            or self.erasures
        )

    def expected_counts(self) -> dict[str, int]:
        """Rows each write must touch; every store checks its counts against these."""
        return {
            "balances": len(self.balances),
            "customers": len(self.customers),
            "entries": len(self.entries),
            "events": len(self.events),
            "keys_stored": len(self.keys_stored),
            "keys_released": len(self.keys_released),
            "customer_rewards_new": len(self.customer_rewards.new),
            "customer_rewards_changed": len(self.customer_rewards.changed),
            "pending_new": len(self.pending.new),
            "pending_changed": len(self.pending.changed),
            "orders_new": len(self.orders.new),
            "orders_changed": len(self.orders.changed),
            "lots_new": len(self.lots_new),
            "lots_changed": len(self.lots_changed),
            "lots_closed": len(self.lots_closed),
            "refunds": len(self.refunds),
            "actions": len(self.actions),
            "erasures": len(self.erasures),
            "rollups": len(self.rollups),
        }
