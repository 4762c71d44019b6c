"""The ledger's batch store in memory: the engine's tests run on it, no database.

It keeps the same tables as the databases (as typed rows) and honours the same
contract: a batch sees its customers and rows as committed, nothing it changed
survives a failure (the state is restored), and every write is checked with
the same counts as Postgres and SQLite (``storage.counts``). Built for tests
and tools, not for serving: it has one process's lifetime and no durability.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from loyalty.customers.refs import ERASED
from loyalty.ledger.engine.changes import Changes
from loyalty.ledger.engine.erasure import scrub_payload
from loyalty.ledger.engine.rows import (
    BALANCE_COLUMNS,
    CUSTOMER_COLUMNS,
    ActionRow,
    CustomerId,
    CustomerRewardRow,
    EarnRuleRow,
    EntryRow,
    EventRow,
    KeyRef,
    LockedCustomer,
    LotRow,
    OrderRow,
    PendingRow,
    RefundRow,
    RewardRow,
    RowKey,
    StoredKey,
    TierRow,
    WindowRow,
)
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.storage.counts import check_counts


class UniqueViolationError(Exception):
    """Two rows with one unique value (an order_id, a discount code): the batch runs again."""


@dataclasses.dataclass
class MemoryTables:
    """Committed state, one attribute per table."""

    customers: dict[CustomerId, LockedCustomer] = dataclasses.field(default_factory=dict)
    keys: dict[KeyRef, StoredKey] = dataclasses.field(default_factory=dict)
    entries: list[EntryRow] = dataclasses.field(default_factory=list)
    events: list[EventRow] = dataclasses.field(default_factory=list)
    rewards: dict[RowKey, RewardRow] = dataclasses.field(default_factory=dict)
    customer_rewards: dict[RowKey, CustomerRewardRow] = dataclasses.field(default_factory=dict)
    orders: dict[RowKey, OrderRow] = dataclasses.field(default_factory=dict)
    refunds: list[RefundRow] = dataclasses.field(default_factory=list)
    earn_rules: dict[tuple[uuid.UUID, str], EarnRuleRow] = dataclasses.field(default_factory=dict)
    actions: list[ActionRow] = dataclasses.field(default_factory=list)
    pending: dict[RowKey, PendingRow] = dataclasses.field(default_factory=dict)
    lots: dict[RowKey, LotRow] = dataclasses.field(default_factory=dict)
    tiers: dict[uuid.UUID, list[TierRow]] = dataclasses.field(default_factory=dict)
    # daily_rollups: (merchant_id, day, metric) -> [plus, minus, count]
    rollups: dict[tuple[uuid.UUID, date, str], list[int]] = dataclasses.field(default_factory=dict)


def _copy(row: Any) -> Any:
    return copy.copy(row)


class MemorySession:
    def __init__(self, tables: MemoryTables) -> None:
        self.tables = tables

    async def claim_keys(
        self, leaders: Mapping[KeyRef, str], now: datetime
    ) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
        claimed: set[KeyRef] = set()
        stored: dict[KeyRef, StoredKey] = {}
        for key, fingerprint in leaders.items():
            if key in self.tables.keys:
                stored[key] = self.tables.keys[key]
            else:
                self.tables.keys[key] = StoredKey(fingerprint, 0, "")
                claimed.add(key)
        return claimed, stored

    async def lock_customers(
        self,
        by_id: set[tuple[uuid.UUID, str]],
        by_email: set[tuple[uuid.UUID, str]],
        by_uuid: set[tuple[uuid.UUID, uuid.UUID]],
    ) -> list[LockedCustomer]:
        found = [
            dataclasses.replace(customer, touched=False)
            for customer in self.tables.customers.values()
            if (
                customer.external_id is not None
                and (customer.merchant_id, customer.external_id) in by_id
            )
            or (customer.email is not None and (customer.merchant_id, customer.email) in by_email)
            or customer.key in by_uuid
        ]
        return sorted(found, key=lambda customer: customer.key)

    async def load(self, request: Prefetch, snapshot: Snapshot, now: datetime) -> None:
        t = self.tables
        for key in request.rewards:
            if key in t.rewards:
                snapshot.rewards.found(key, t.rewards[key])
        for m, c, reward_id in request.redeemed:
            count = sum(
                1
                for r in t.customer_rewards.values()
                if (r.merchant_id, r.customer_id, r.reward_id) == (m, c, reward_id)
                and r.status != "revert"
            )
            snapshot.redeemed.found((m, c, reward_id), count)
        for key in request.customer_rewards:
            if key in t.customer_rewards:
                snapshot.customer_rewards.found(key, _copy(t.customer_rewards[key]))
        for m, code in request.reward_codes:
            for r in t.customer_rewards.values():
                if r.merchant_id == m and r.discount_code == code:
                    snapshot.customer_reward_found((m, code), _copy(r))
        for owner in sorted(request.rewards_of):
            for r in t.customer_rewards.values():
                if (r.merchant_id, r.customer_id) == owner and r.status in ("active", "inactive"):
                    snapshot.live_reward_found(_copy(r))
        for m, order_id in request.orders:
            for order in t.orders.values():
                if order.merchant_id == m and order.order_id == order_id:
                    snapshot.orders.found((m, order_id), _copy(order))
        for rule_key in request.earn_rules:
            if rule_key in t.earn_rules:
                snapshot.earn_rules.found(rule_key, t.earn_rules[rule_key])
        for m, c, action, since in request.action_counts:
            count = sum(
                1
                for a in t.actions
                if (a.merchant_id, a.customer_id, a.action) == (m, c, action)
                and (since is None or a.created_at >= since)
            )
            snapshot.action_counts.found((m, c, action, since), count)
        for pending_key in request.pending:
            if pending_key in t.pending:
                snapshot.pending_found(_copy(t.pending[pending_key]))
        for owner in request.pending_of:
            for row in t.pending.values():
                if (row.merchant_id, row.customer_id) == owner and row.status == "pending":
                    snapshot.pending_found(_copy(row))
        for lot in t.lots.values():
            if (lot.merchant_id, lot.customer_id) in request.lots:
                snapshot.lot_found(_copy(lot))
        for merchant_id in request.tiers:
            for tier in sorted(t.tiers.get(merchant_id, []), key=lambda tier: tier.threshold_minor):
                snapshot.tier_found(tier)
        for m, c, basis, days in request.windows:
            snapshot.windows.found((m, c), self._window(m, c, basis, now - timedelta(days=days)))

    def _window(self, m: uuid.UUID, c: uuid.UUID, basis: str, since: datetime) -> WindowRow:
        if basis == "amount_spent":
            amounts = [
                (o.total_minor - o.refunded_minor, o.placed_at)
                for o in self.tables.orders.values()
                if (o.merchant_id, o.customer_id) == (m, c)
                and o.placed_at > since
                and o.total_minor > o.refunded_minor
            ]
        else:
            amounts = [
                (e.lifetime_delta_minor, e.created_at)
                for e in self.tables.entries
                if (e.merchant_id, e.customer_id) == (m, c)
                and e.created_at > since
                and e.lifetime_delta_minor != 0
            ]
        oldest = min((at for _, at in amounts), default=None)
        return WindowRow(sum(amount for amount, _ in amounts), oldest)

    async def write(self, changes: Changes, now: datetime) -> None:
        t = self.tables
        written: dict[str, int] = dict.fromkeys(changes.expected_counts(), 0)
        for customer in changes.balances:
            stored = t.customers.get(customer.key)
            if stored is not None and stored.last_sequence == customer.initial_sequence:
                for column in BALANCE_COLUMNS:
                    setattr(stored, column, getattr(customer, column))
                written["balances"] += 1
        for customer in changes.customers:
            stored = t.customers.get(customer.key)
            if stored is not None:
                for column in CUSTOMER_COLUMNS:
                    setattr(stored, column, getattr(customer, column))
                written["customers"] += 1
        t.entries += changes.entries
        t.events += changes.events
        written["entries"], written["events"] = len(changes.entries), len(changes.events)
        for m, key, status, body in changes.keys_stored:
            if (m, key) in t.keys:
                t.keys[(m, key)] = dataclasses.replace(
                    t.keys[(m, key)], response_status=status, response_body=body
                )
                written["keys_stored"] += 1
        for key_ref in changes.keys_released:
            if t.keys.pop(key_ref, None) is not None:
                written["keys_released"] += 1
        self._write_rows(changes, written)
        day = now.astimezone(UTC).date()
        for merchant_id, metric, plus, minus, count in changes.rollup_rows():
            figures = t.rollups.setdefault((merchant_id, day, metric), [0, 0, 0])
            figures[0] += plus
            figures[1] += minus
            figures[2] += count
            written["rollups"] += 1
        for erasure in changes.erasures:
            stored = t.customers.get((erasure.merchant_id, erasure.customer_id))
            if stored is None or stored.status == ERASED:
                continue
            stored.external_id = stored.email = stored.referred_by = None
            stored.status = ERASED
            written["erasures"] += 1
            for index, event in enumerate(t.events):
                named = (
                    erasure.external_id is not None and event.customer_ref == erasure.external_id
                )
                if event.merchant_id == erasure.merchant_id and named:
                    payload = scrub_payload(
                        event.type, event.payload, erasure.external_id, erasure.email
                    )
                    t.events[index] = dataclasses.replace(event, payload=payload, customer_ref=None)
        check_counts(changes, written)

    def _write_rows(self, changes: Changes, written: dict[str, int]) -> None:
        t = self.tables
        for reward in changes.customer_rewards.new:
            codes = {(r.merchant_id, r.discount_code) for r in t.customer_rewards.values()}
            if (
                reward.discount_code is not None
                and (reward.merchant_id, reward.discount_code) in codes
            ):
                raise UniqueViolationError("customer_rewards.discount_code")
            t.customer_rewards[(reward.merchant_id, reward.id)] = _copy(reward)
            written["customer_rewards_new"] += 1
        for reward in changes.customer_rewards.changed:
            stored_reward = t.customer_rewards.get((reward.merchant_id, reward.id))
            if stored_reward is not None and stored_reward.status in ("active", "inactive"):
                t.customer_rewards[(reward.merchant_id, reward.id)] = _copy(reward)
                written["customer_rewards_changed"] += 1
        for pending in changes.pending.new:
            t.pending[(pending.merchant_id, pending.id)] = _copy(pending)
            written["pending_new"] += 1
        for pending in changes.pending.changed:
            stored_pending = t.pending.get((pending.merchant_id, pending.id))
            if stored_pending is not None and stored_pending.status == "pending":
                t.pending[(pending.merchant_id, pending.id)] = _copy(pending)
                written["pending_changed"] += 1
        for order in changes.orders.new:
            if any(
                (o.merchant_id, o.order_id) == (order.merchant_id, order.order_id)
                for o in t.orders.values()
            ):
                raise UniqueViolationError("orders.order_id")
            t.orders[(order.merchant_id, order.id)] = _copy(order)
            written["orders_new"] += 1
        for order in changes.orders.changed:
            if (order.merchant_id, order.id) in t.orders:
                t.orders[(order.merchant_id, order.id)] = _copy(order)
                written["orders_changed"] += 1
        t.refunds += changes.refunds
        t.actions += changes.actions
        written["refunds"], written["actions"] = len(changes.refunds), len(changes.actions)
        for lot in changes.lots_new:
            t.lots[(lot.merchant_id, lot.id)] = _copy(lot)
            written["lots_new"] += 1
        for lot in changes.lots_changed:
            if (lot.merchant_id, lot.id) in t.lots:
                t.lots[(lot.merchant_id, lot.id)].remaining_minor = lot.remaining_minor
                written["lots_changed"] += 1
        for lot in changes.lots_closed:
            if t.lots.pop((lot.merchant_id, lot.id), None) is not None:
                written["lots_closed"] += 1


class MemoryStore:
    """Tables in this process; one batch at a time, restored if the batch fails."""

    def __init__(self, tables: MemoryTables | None = None) -> None:
        self.tables = tables if tables is not None else MemoryTables()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[MemorySession]:
        saved = copy.deepcopy(self.tables)
        try:
            yield MemorySession(self.tables)
        except BaseException:
            self.tables.__dict__.update(saved.__dict__)
            raise

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, UniqueViolationError)

    def is_unavailable(self, error: BaseException) -> bool:
        return False
