"""The ledger's batch I/O on Postgres, straight on asyncpg (prepared statements).

A batch is: read the replies stored under its idempotency keys (keys not
found are the batch's to use), lock its customers' balances in a fixed order
(no deadlock between batches), read what the operations asked for (one query
per table), then write: one statement of data-modifying CTEs for balances,
entries, events and the keys with their replies (the hot path, hand-written),
and one more for every other table when the batch changed any.

A key is written once, with its reply, in the batch's last statement (not
claimed first and updated later: one row version and one round trip fewer per
batch). Another transaction using the same key meanwhile (a client's retry
reaching another process) makes that insert wait for it and then skip the
row; the batch then fails as ``KeyTakenMeanwhile``, a transient error, and is
planned again, when the key's stored reply answers the retry.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import asyncpg

from loyalty.db.engine import Database
from loyalty.db.engine import is_unavailable as database_unavailable
from loyalty.errors import invariant
from loyalty.ledger.engine.changes import ROLLUP_SHARDS, Changes
from loyalty.ledger.engine.erasure import scrub_payload
from loyalty.ledger.engine.rows import (
    BALANCE_COLUMNS,
    CUSTOMER_COLUMNS,
    ActionRow,
    CustomerRewardRow,
    EarnRuleRow,
    EntryRow,
    ErasureRow,
    EventRow,
    KeyRef,
    LockedCustomer,
    LotRow,
    OrderRow,
    PendingRow,
    RefundRow,
    RewardRow,
    StoredKey,
    TierRow,
    WindowRow,
    columns,
    locked_select_list,
)
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.storage.columns import POSTGRES_TYPES, kinds, select_list
from loyalty.ledger.storage.counts import check_counts

DISCOUNT_CODE_CONSTRAINT = "uq_customer_rewards_merchant_id_discount_code"
ORDER_CONSTRAINT = "uq_orders_merchant_id_order_id"

# A batch's transaction, begun in one round trip with the planner held to the plans
# every statement below is written for: the batch's rows (``unnest``) drive, and each
# table is reached through a primary or unique key, by nested loops. Left to its
# statistics the planner picks those only once it knows a table is large. A
# statement first planned while a table was small (a new database, a table not yet
# analyzed) gets a plan that scans the whole table and hashes it, and each pooled
# connection keeps that generic plan until the next ANALYZE of the table: measured,
# the idempotency-key lookup then took 2.5 ms per batch instead of 0.1 ms, and
# longer as the table grew. The settings last until the transaction ends.
BEGIN_BATCH = (
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
    "SET LOCAL enable_mergejoin = off"
)

_STORED_KEYS = """
SELECT k.merchant_id, k.key, k.request_fingerprint, k.response_status, k.response_body
FROM idempotency_keys k
JOIN unnest($1::uuid[], $2::text[]) AS t(merchant_id, key)
  ON k.merchant_id = t.merchant_id AND k.key = t.key
"""

# Both locking reads end the same way: each customer's balance and programme, locked
# in one fixed order (merchant_id, customer_id) so concurrent batches never deadlock.
_LOCKED_IN_ORDER = """
JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
JOIN program_settings s ON s.merchant_id = c.merchant_id
ORDER BY c.merchant_id, c.id
FOR UPDATE OF b FOR NO KEY UPDATE OF c
"""

# Each kind of identifier joins through its own unique index; the balances are
# locked in (merchant_id, customer_id) order so concurrent batches never deadlock.
# A customer erased while this waited for its balance lock is left out: once the
# lock is granted Postgres re-reads the locked balance row but not the customer
# row joined to it, so the erased customer would be locked under its old platform
# id; its erasure deleted the balance row and inserted it again, and READ
# COMMITTED drops a row deleted under a waiting FOR UPDATE. The customer row is
# locked too (NO KEY: entries referencing it are still inserted freely): a batch
# that waited then reads the row as the batch before it left it (total spent,
# rewarded actions, referrals), not as it was when this statement started.
_LOCK_CUSTOMERS = f"""
WITH wanted AS (
    SELECT c.merchant_id, c.id
    FROM unnest($1::uuid[], $2::text[]) AS r(merchant_id, external_id)
    JOIN customers c ON c.merchant_id = r.merchant_id AND c.external_id = r.external_id
    UNION
    SELECT c.merchant_id, c.id
    FROM unnest($3::uuid[], $4::text[]) AS r(merchant_id, email)
    JOIN customers c ON c.merchant_id = r.merchant_id AND c.email = r.email
    UNION
    SELECT r.merchant_id, r.id FROM unnest($5::uuid[], $6::uuid[]) AS r(merchant_id, id)
)
SELECT {locked_select_list()}
FROM wanted w
JOIN customers c ON c.merchant_id = w.merchant_id AND c.id = w.id
{_LOCKED_IN_ORDER}"""

# The common batch names every customer by platform id (the API's customer_id):
# one lookup each, no de-duplication. A customer whose platform id changed or
# who was erased while this waited for the lock no longer matches once the
# lock is granted (Postgres re-checks the locked customer row), so it is left
# out: the request then answers 404, as it would have a moment later.
_LOCK_BY_PLATFORM_ID = f"""
SELECT {locked_select_list()}
FROM unnest($1::uuid[], $2::text[]) AS r(merchant_id, external_id)
JOIN customers c ON c.merchant_id = r.merchant_id AND c.external_id = r.external_id
{_LOCKED_IN_ORDER}"""

# The hot path: every batch's balances, entries, events and idempotency replies,
# each table's rows sent as one array of records (migration 0015's types: the
# driver checks each element of an array for nesting, so one record per row
# costs far less than one array per column).
_APPLY = """
WITH balances AS (
    UPDATE customer_balances AS b
    SET points_balance_minor = v.points_balance_minor,
        lifetime_points_minor = v.lifetime_points_minor,
        points_spent_minor = v.points_spent_minor,
        points_expired_minor = v.points_expired_minor,
        pending_points_minor = v.pending_points_minor, last_sequence = v.last_sequence,
        last_activity_at = v.last_activity_at, expiring_lots_minor = v.expiring_lots_minor,
        next_expiry_at = v.next_expiry_at, next_expiry_minor = v.next_expiry_minor,
        tier_id = v.tier_id, tier_expires_at = v.tier_expires_at,
        tier_recheck_at = v.tier_recheck_at,
        store_credit_balance_minor = v.store_credit_balance_minor, updated_at = $1
    FROM unnest($2::ledger_balance_write[]) AS v
    WHERE b.merchant_id = v.merchant_id AND b.customer_id = v.customer_id
      AND b.last_sequence = v.initial_sequence
    RETURNING 1
), entries AS (
    INSERT INTO ledger_entries
        (merchant_id, id, customer_id, sequence, points_minor, kind, description,
         internal_note, visible_to_customer, apply_to_lifetime, lifetime_delta_minor,
         balance_after_minor, expires_at, earn_rule_id, actor, created_at)
    SELECT e.*, $1 FROM unnest($3::ledger_entry_write[]) AS e
    RETURNING 1
), new_events AS (
    INSERT INTO events
        (merchant_id, id, type, subject_id, payload, customer_ref, actor, created_at)
    SELECT v.*, $1 FROM unnest($4::ledger_event_write[]) AS v
    RETURNING 1
), stored_keys AS (
    -- In key order, so two batches using the same keys never deadlock.
    INSERT INTO idempotency_keys
        (merchant_id, key, request_fingerprint, response_status, response_body, created_at)
    SELECT v.merchant_id, v.key, v.request_fingerprint, v.response_status, v.response_body, $1
    FROM unnest($5::ledger_key_write[]) AS v
    ORDER BY v.merchant_id, v.key
    ON CONFLICT DO NOTHING
    RETURNING 1
), rollups AS (
    -- In the rows' order (Changes.rollup_rows), so concurrent batches never deadlock.
    INSERT INTO daily_rollups AS r
        (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
    SELECT v.merchant_id, $6::date, v.metric, $7::int2, v.plus, v.minus, v.count
    FROM unnest($8::uuid[], $9::text[], $10::int8[], $11::int8[], $12::int8[])
        WITH ORDINALITY AS v(merchant_id, metric, plus, minus, count, n)
    ORDER BY v.n
    ON CONFLICT (merchant_id, day, metric, shard) DO UPDATE
    SET plus_minor = r.plus_minor + excluded.plus_minor,
        minus_minor = r.minus_minor + excluded.minus_minor,
        count = r.count + excluded.count
    RETURNING 1
)
SELECT (SELECT count(*) FROM balances) AS balances,
       (SELECT count(*) FROM entries) AS entries,
       (SELECT count(*) FROM new_events) AS events,
       (SELECT count(*) FROM stored_keys) AS keys_stored,
       (SELECT count(*) FROM rollups) AS rollups
"""
# Their columns but created_at: the batch's time, $1.
_ENTRY_COLUMNS = columns(EntryRow)[:-1]
_EVENT_COLUMNS = columns(EventRow)[:-1]
# A row's values, read in C (one tuple per row).
_BALANCE_VALUES = ("merchant_id", "customer_id", *BALANCE_COLUMNS, "initial_sequence")
_balance_values = attrgetter(*_BALANCE_VALUES)
_entry_values = attrgetter(*_ENTRY_COLUMNS)
_event_values = attrgetter(*_EVENT_COLUMNS)
# A stored key's values: Changes.keys_stored's, then the request's fingerprint.
_KEY_VALUES = ("merchant_id", "key", "response_status", "response_body", "request_fingerprint")
# Each record type's fields, in the order the writer sends them (a test compares
# them with the types migration 0015 created).
WRITE_TYPES = {
    "ledger_balance_write": _BALANCE_VALUES,
    "ledger_entry_write": _ENTRY_COLUMNS,
    "ledger_event_write": _EVENT_COLUMNS,
    "ledger_key_write": _KEY_VALUES,
}


class _Statement:
    """Numbered parameters for a generated statement: one array per column."""

    def __init__(self) -> None:
        self.arguments: list[Any] = []

    def arrays(self, row_class: type[Any], names: tuple[str, ...], rows: Sequence[Any]) -> str:
        """``unnest($n::type[], ...)`` over ``names`` of ``rows`` (attribute access)."""
        parts = []
        for name, kind in zip(names, kinds(row_class, names), strict=True):
            self.arguments.append([getattr(row, name) for row in rows])
            parts.append(f"${len(self.arguments)}::{POSTGRES_TYPES[kind]}[]")
        return f"unnest({', '.join(parts)}) AS v({', '.join(names)})"


def _insert(name: str, table: str, row_class: type[Any], rows: Sequence[Any], s: _Statement) -> str:
    names = columns(row_class)
    return (
        f"{name} AS (INSERT INTO {table} ({', '.join(names)}) "
        f"SELECT {', '.join('v.' + n for n in names)} FROM {s.arrays(row_class, names, rows)} "
        "RETURNING 1)"
    )


def _update(
    name: str,
    table: str,
    row_class: type[Any],
    rows: Sequence[Any],
    s: _Statement,
    key: tuple[str, ...],
    set_columns: tuple[str, ...],
    guard: str = "",
) -> str:
    sets = ", ".join(f"{column} = v.{column}" for column in set_columns)
    match = " AND ".join(f"t.{column} = v.{column}" for column in key)
    return (
        f"{name} AS (UPDATE {table} AS t SET {sets} "
        f"FROM {s.arrays(row_class, key + set_columns, rows)} WHERE {match}{guard} RETURNING 1)"
    )


def _beyond_the_ledger(changes: Changes) -> tuple[str, list[Any]]:
    """One statement for every table but balances, entries, events and keys."""
    s = _Statement()
    rewards = changes.customer_rewards
    pending = changes.pending
    orders = changes.orders
    ctes = [
        _insert("customer_rewards_new", "customer_rewards", CustomerRewardRow, rewards.new, s),
        _update(
            "customer_rewards_changed", "customer_rewards", CustomerRewardRow, rewards.changed, s,
            ("merchant_id", "id"),
            ("status", "order_id", "revert_transaction_id", "used_at", "reverted_at",
             "updated_at"),
            " AND t.status IN ('active', 'inactive')",
        ),
        _insert("pending_new", "pending_credits", PendingRow, pending.new, s),
        _update(
            "pending_changed", "pending_credits", PendingRow, pending.changed, s,
            ("merchant_id", "id"),
            ("status", "points_cancelled_minor", "transaction_id", "released_at",
             "cancelled_at"),
            " AND t.status = 'pending'",
        ),
        _insert("orders_new", "orders", OrderRow, orders.new, s),
        _update(
            "orders_changed", "orders", OrderRow, orders.changed, s,
            ("merchant_id", "id"),
            ("status", "refunded_minor", "points_removed_minor", "refund_points_minor",
             "updated_at"),
        ),
        _insert("refunds", "order_refunds", RefundRow, changes.refunds, s),
        _insert("lots_new", "point_lots", LotRow, changes.lots_new, s),
        _update(
            "lots_changed", "point_lots", LotRow, changes.lots_changed, s,
            ("merchant_id", "id"), ("remaining_minor",),
        ),
        f"lots_closed AS (DELETE FROM point_lots AS t USING "
        f"{s.arrays(LotRow, ('merchant_id', 'id'), changes.lots_closed)} "
        "WHERE t.merchant_id = v.merchant_id AND t.id = v.id RETURNING 1)",
        _update(
            "customers", "customers", LockedCustomer, changes.customers, s,
            ("merchant_id", "customer_id"), CUSTOMER_COLUMNS,
        ).replace("t.customer_id = v.customer_id", "t.id = v.customer_id"),
        _insert("actions", "customer_actions", ActionRow, changes.actions, s),
    ]  # fmt: skip
    names = [cte.split(" AS (", 1)[0] for cte in ctes]
    counts = ", ".join(f"(SELECT count(*) FROM {name}) AS {name}" for name in names)
    return f"WITH {', '.join(ctes)} SELECT {counts}", s.arguments


def _columns(rows: Iterable[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (transposed in C: a batch's write sends
    some fifty arrays)."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    if not columns:
        return [[] for _ in range(width)]
    invariant(len(columns) == width, f"rows of {len(columns)} values, not {width}")
    return columns


_REWARDS = """
SELECT r.merchant_id, r.id, r.name, r.reward_type, r.points_cost_minor, r.reward_rule, r.active,
       r.deleted_at IS NOT NULL AS deleted, r.code_validity_days, r.per_customer_limit
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, id)
JOIN rewards r ON r.merchant_id = t.merchant_id AND r.id = t.id
"""
_REDEEMED = """
SELECT t.merchant_id, t.customer_id, t.reward_id, count(cr.id) AS redeemed
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS t(merchant_id, customer_id, reward_id)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.customer_id = t.customer_id
 AND cr.reward_id = t.reward_id AND cr.status <> 'revert'
GROUP BY t.merchant_id, t.customer_id, t.reward_id
"""
_CUSTOMER_REWARDS = f"""
SELECT {select_list(CustomerRewardRow, "cr")}
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, id)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.id = t.id
ORDER BY cr.merchant_id, cr.id
FOR UPDATE OF cr
"""
_REWARD_CODES = f"""
SELECT {select_list(CustomerRewardRow, "cr")}
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, code)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.discount_code = t.code
ORDER BY cr.merchant_id, cr.id
FOR UPDATE OF cr
"""
_REWARDS_OF = f"""
SELECT {select_list(CustomerRewardRow, "cr")}
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, customer_id)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.customer_id = t.customer_id
 AND cr.status IN ('active', 'inactive')
ORDER BY cr.merchant_id, cr.id
FOR UPDATE OF cr
"""
_ORDERS = f"""
SELECT {select_list(OrderRow, "o")}
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, order_id)
JOIN orders o ON o.merchant_id = t.merchant_id AND o.order_id = t.order_id
"""
_EARN_RULES = f"""
SELECT {select_list(EarnRuleRow, "r")}
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, type)
JOIN earn_rules r ON r.merchant_id = t.merchant_id AND r.type = t.type
"""
_ACTION_COUNTS = """
SELECT t.merchant_id, t.customer_id, t.action, t.since, count(a.id) AS rewarded
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])
    AS t(merchant_id, customer_id, action, since)
JOIN customer_actions a ON a.merchant_id = t.merchant_id AND a.customer_id = t.customer_id
 AND a.action = t.action AND (t.since IS NULL OR a.created_at >= t.since)
GROUP BY t.merchant_id, t.customer_id, t.action, t.since
"""
# Lots, pending credits and tiers are only ever changed by the writer under
# their customer's balance lock, which the batch already holds: no further lock.
_PENDING = f"""
SELECT {select_list(PendingRow, "p")}
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, id)
JOIN pending_credits p ON p.merchant_id = t.merchant_id AND p.id = t.id
"""
_PENDING_OF = f"""
SELECT {select_list(PendingRow, "p")}
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, customer_id)
JOIN pending_credits p ON p.merchant_id = t.merchant_id AND p.customer_id = t.customer_id
 AND p.status = 'pending'
"""
_LOTS = f"""
SELECT {select_list(LotRow, "l")}
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, customer_id)
JOIN point_lots l ON l.merchant_id = t.merchant_id AND l.customer_id = t.customer_id
"""
_TIERS = f"""
SELECT {select_list(TierRow, "t")} FROM tiers t WHERE t.merchant_id = ANY($1::uuid[])
ORDER BY t.merchant_id, t.threshold_minor
"""
# The basis inside a rolling window: lifetime points earned in the last N days, or
# money spent (net of refunds) on orders placed in them.
_WINDOWS = {
    "lifetime_points": """
SELECT t.merchant_id, t.customer_id, coalesce(sum(e.lifetime_delta_minor), 0)::int8 AS total,
       min(e.created_at) AS oldest_at
FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) AS t(merchant_id, customer_id, days)
LEFT JOIN ledger_entries e ON e.merchant_id = t.merchant_id AND e.customer_id = t.customer_id
 AND e.created_at > $4::timestamptz - make_interval(days => t.days)
 AND e.lifetime_delta_minor <> 0
GROUP BY t.merchant_id, t.customer_id
""",
    "amount_spent": """
SELECT t.merchant_id, t.customer_id,
       coalesce(sum(o.total_minor - o.refunded_minor), 0)::int8 AS total,
       min(o.placed_at) AS oldest_at
FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) AS t(merchant_id, customer_id, days)
LEFT JOIN orders o ON o.merchant_id = t.merchant_id AND o.customer_id = t.customer_id
 AND o.placed_at > $4::timestamptz - make_interval(days => t.days)
 AND o.total_minor > o.refunded_minor
GROUP BY t.merchant_id, t.customer_id
""",
}


# An erasure: the profile and identity, the balance row deleted and inserted again
# (see _LOCK_CUSTOMERS), the events that carried the platform id.
_ERASE_CUSTOMER = """
UPDATE customers
SET external_id = NULL, email = NULL, first_name = NULL, last_name = NULL,
    first_name_search = NULL, last_name_search = NULL, date_of_birth = NULL,
    status = 'erased', status_reason = NULL, referral_code = NULL, referred_by = NULL,
    updated_at = $3
WHERE merchant_id = $1 AND id = $2 AND status <> 'erased'
"""
_REKEY_BALANCE = """
WITH gone AS (
    DELETE FROM customer_balances WHERE merchant_id = $1 AND customer_id = $2 RETURNING *
)
INSERT INTO customer_balances SELECT * FROM gone
"""
# Numbered and unnumbered events each through their partial index.
_EVENTS_OF = """
SELECT id, type, payload FROM events
WHERE merchant_id = $1 AND customer_ref = $2 AND sequence IS NOT NULL
UNION ALL
SELECT id, type, payload FROM events
WHERE merchant_id = $1 AND sequence IS NULL AND customer_ref = $2
"""
_BLANK_EVENTS = """
UPDATE events AS e SET payload = v.payload, customer_ref = NULL
FROM unnest($2::uuid[], $3::text[]) AS v(id, payload)
WHERE e.merchant_id = $1 AND e.id = v.id
"""


class KeyTakenMeanwhile(Exception):
    """Another transaction stored a reply under one of the batch's keys after the batch
    read them: the batch is planned again (transient), and that reply answers."""


class PostgresSession:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._fingerprints: Mapping[KeyRef, str] = {}

    async def claim_keys(
        self, leaders: Mapping[KeyRef, str], now: datetime
    ) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
        """The keys no reply is stored under yet (written with theirs by ``write``) and
        the replies stored under the others."""
        if not leaders:
            return set(), {}
        self._fingerprints = leaders
        stored: dict[KeyRef, StoredKey] = {}
        for row in await self.connection.fetch(_STORED_KEYS, *_columns(list(leaders), 2)):
            stored[(row["merchant_id"], row["key"])] = StoredKey(
                row["request_fingerprint"], row["response_status"], row["response_body"]
            )
        return {key for key in leaders if key not in stored}, stored

    async def lock_customers(
        self,
        by_id: set[tuple[uuid.UUID, str]],
        by_email: set[tuple[uuid.UUID, str]],
        by_uuid: set[tuple[uuid.UUID, uuid.UUID]],
    ) -> list[LockedCustomer]:
        id_merchants, ids = _columns(by_id, 2)
        if not by_email and not by_uuid:
            rows = await self.connection.fetch(_LOCK_BY_PLATFORM_ID, id_merchants, ids)
            return [LockedCustomer(*row) for row in rows]
        email_merchants, emails = _columns(by_email, 2)
        uuid_merchants, uuids = _columns(by_uuid, 2)
        rows = await self.connection.fetch(
            _LOCK_CUSTOMERS, id_merchants, ids, email_merchants, emails, uuid_merchants, uuids
        )
        # The select list is the class's fields, in order.
        locked = [LockedCustomer(*row) for row in rows]
        missing = by_uuid - {customer.key for customer in locked}
        if missing:
            # Erased while this waited (its balance row was inserted again): a UUID
            # still names it, so lock it again, in a statement that sees the new row.
            merchants, customer_ids = _columns(sorted(missing), 2)
            again = await self.connection.fetch(
                _LOCK_CUSTOMERS, [], [], [], [], merchants, customer_ids
            )
            locked = sorted([*locked, *(LockedCustomer(*row) for row in again)], key=_key)
        return locked

    async def _rows(self, sql: str, keys: Sequence[Sequence[Any]], width: int) -> list[Any]:
        if not keys:
            return []
        rows: list[Any] = await self.connection.fetch(sql, *_columns(list(keys), width))
        return rows

    async def load(self, request: Prefetch, snapshot: Snapshot, now: datetime) -> None:
        for row in await self._rows(_REWARDS, list(request.rewards), 2):
            snapshot.rewards.found((row["merchant_id"], row["id"]), RewardRow(**row))
        for row in await self._rows(_REDEEMED, list(request.redeemed), 3):
            redeemed = (row["merchant_id"], row["customer_id"], row["reward_id"])
            snapshot.redeemed.found(redeemed, row["redeemed"])
        for row in await self._rows(_CUSTOMER_REWARDS, sorted(request.customer_rewards), 2):
            snapshot.customer_rewards.found(
                (row["merchant_id"], row["id"]), CustomerRewardRow(**row)
            )
        for row in await self._rows(_REWARD_CODES, sorted(request.reward_codes), 2):
            snapshot.customer_reward_found(
                (row["merchant_id"], row["discount_code"]), CustomerRewardRow(**row)
            )
        for row in await self._rows(_REWARDS_OF, sorted(request.rewards_of), 2):
            snapshot.live_reward_found(CustomerRewardRow(**row))
        for row in await self._rows(_ORDERS, list(request.orders), 2):
            snapshot.orders.found((row["merchant_id"], row["order_id"]), OrderRow(**row))
        for row in await self._rows(_EARN_RULES, list(request.earn_rules), 2):
            snapshot.earn_rules.found((row["merchant_id"], row["type"]), EarnRuleRow(**row))
        for row in await self._rows(_ACTION_COUNTS, list(request.action_counts), 4):
            counted = (row["merchant_id"], row["customer_id"], row["action"], row["since"])
            snapshot.action_counts.found(counted, row["rewarded"])
        for row in await self._rows(_PENDING, list(request.pending), 2):
            snapshot.pending_found(PendingRow(**row))
        for row in await self._rows(_PENDING_OF, list(request.pending_of), 2):
            snapshot.pending_found(PendingRow(**row))
        for row in await self._rows(_LOTS, list(request.lots), 2):
            snapshot.lot_found(LotRow(**row))
        if request.tiers:
            for row in await self.connection.fetch(_TIERS, list(request.tiers)):
                snapshot.tier_found(TierRow(**row))
        for basis, sql in _WINDOWS.items():
            wanted = [(m, c, days) for m, c, b, days in request.windows if b == basis]
            if wanted:
                for row in await self.connection.fetch(sql, *_columns(wanted, 3), now):
                    owner = (row["merchant_id"], row["customer_id"])
                    snapshot.windows.found(owner, WindowRow(row["total"], row["oldest_at"]))

    async def write(self, changes: Changes, now: datetime) -> None:
        fingerprints = self._fingerprints
        rollups = _columns(changes.rollup_rows(), 5)
        row = await self.connection.fetchrow(
            _APPLY,
            now,
            list(map(_balance_values, changes.balances)),
            list(map(_entry_values, changes.entries)),
            list(map(_event_values, changes.events)),
            [(*stored, fingerprints[stored[0], stored[1]]) for stored in changes.keys_stored],
            now.astimezone(UTC).date(),
            random.randrange(ROLLUP_SHARDS),
            *rollups,
        )
        assert row is not None
        written = dict(row)
        if written["keys_stored"] < len(changes.keys_stored):
            raise KeyTakenMeanwhile("an idempotency key of the batch was used meanwhile")
        # A key whose request was refused before it ran was never written: nothing to release.
        written["keys_released"] = len(changes.keys_released)
        if changes.beyond_the_ledger:
            sql, arguments = _beyond_the_ledger(changes)
            more = await self.connection.fetchrow(sql, *arguments)
            assert more is not None
            written.update(dict(more))
        else:
            written.update({name: 0 for name in changes.expected_counts() if name not in written})
        written["erasures"] = 0
        for erasure in changes.erasures:
            written["erasures"] += await self._erase(erasure)
        check_counts(changes, written)

    async def _erase(self, erasure: ErasureRow) -> int:
        """Write one erasure (after the batch's other writes); the customers erased (1)."""
        key = (erasure.merchant_id, erasure.customer_id)
        status = await self.connection.execute(_ERASE_CUSTOMER, *key, erasure.updated_at)
        await self.connection.execute(_REKEY_BALANCE, *key)
        if erasure.external_id is not None:
            rows = await self.connection.fetch(_EVENTS_OF, erasure.merchant_id, erasure.external_id)
            if rows:
                blanked = [
                    scrub_payload(row["type"], row["payload"], erasure.external_id, erasure.email)
                    for row in rows
                ]
                await self.connection.execute(
                    _BLANK_EVENTS, erasure.merchant_id, [row["id"] for row in rows], blanked
                )
        return int(status.split()[-1])


def _key(customer: LockedCustomer) -> tuple[uuid.UUID, uuid.UUID]:
    return customer.key


class PostgresStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[PostgresSession]:
        # A batch that raises leaves by raw_connection(), which closes the connection:
        # the server rolls the transaction back and lets go of its locks.
        async with self.database.raw_connection() as connection:
            await connection.execute(BEGIN_BATCH)
            yield PostgresSession(connection)
            # An aborted transaction answers COMMIT with ROLLBACK, not an error.
            status = await connection.execute("COMMIT")
            invariant(status == "COMMIT", f"the batch's COMMIT answered {status}")
        self.database.events_wakeup.poke()  # committed: its events can be delivered

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, asyncpg.exceptions.UniqueViolationError):
            # A new discount code met an existing one: the batch is planned again with new
            # codes (or an order met the same order_id posted for another customer: planned
            # again, it answers order_conflict).
            return error.constraint_name in (DISCOUNT_CODE_CONSTRAINT, ORDER_CONSTRAINT)
        return isinstance(
            error,
            KeyTakenMeanwhile
            | asyncpg.exceptions.DeadlockDetectedError
            | asyncpg.exceptions.SerializationError,
        )

    def is_unavailable(self, error: BaseException) -> bool:
        return database_unavailable(error)
