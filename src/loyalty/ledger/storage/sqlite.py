"""The ledger's batch I/O on SQLite, straight on aiosqlite.

The writer holds SQLite's write lock for the whole batch (BEGIN IMMEDIATE),
so reading keys and balances and then writing needs no further locking.
Values are stored in the same forms SQLAlchemy uses on SQLite (``columns``).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from loyalty.db.engine import Database
from loyalty.ledger.engine.changes import Changes
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
from loyalty.ledger.storage.columns import from_sqlite, select_list, sqlite_time, to_sqlite
from loyalty.ledger.storage.counts import check_counts

_CUSTOMERS_BY = f"""
SELECT {locked_select_list()}
FROM ({{values}}) AS w
CROSS JOIN customers c ON c.merchant_id = w.column1 AND c.{{column}} = w.column2
JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
JOIN program_settings s ON s.merchant_id = c.merchant_id
"""


def _values(count: int, width: int = 2) -> str:
    """``VALUES (?, ?), ...``: joined from, so that SQLite searches by index."""
    row = "(" + ", ".join(["?"] * width) + ")"
    return "VALUES " + ", ".join([row] * count)


def _parameters(rows: Sequence[Sequence[Any]]) -> list[Any]:
    """Flattened, UUIDs as the hex text SQLite stores, datetimes as its text."""
    out: list[Any] = []
    for row in rows:
        for value in row:
            if isinstance(value, uuid.UUID):
                out.append(value.hex)
            elif isinstance(value, datetime):
                out.append(sqlite_time(value))
            else:
                out.append(value)
    return out


def _insert(table: str, row_class: type[Any]) -> str:
    names = columns(row_class)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['?'] * len(names))})"


class SqliteSession:
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self.connection = connection

    async def _fetch(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        cursor = await self.connection.execute(sql, parameters)
        return list(await cursor.fetchall())

    async def _typed(
        self, row_class: type[Any], sql: str, keys: Sequence[Sequence[Any]], width: int
    ) -> list[Any]:
        """Rows of ``row_class`` joined from ``keys`` (``{values}`` in ``sql``)."""
        if not keys:
            return []
        rows = await self._fetch(sql.format(values=_values(len(keys), width)), _parameters(keys))
        return [row_class(*from_sqlite(row_class, row)) for row in rows]

    async def claim_keys(
        self, leaders: Mapping[KeyRef, str], now: datetime
    ) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
        if not leaders:
            return set(), {}
        rows = await self._fetch(
            f"WITH wanted(merchant_id, key) AS ({_values(len(leaders))}) "
            "SELECT k.merchant_id, k.key, k.request_fingerprint, k.response_status, "
            "k.response_body FROM wanted w JOIN idempotency_keys k "
            "ON k.merchant_id = w.merchant_id AND k.key = w.key",
            _parameters(list(leaders)),
        )
        stored = {(uuid.UUID(r[0]), r[1]): StoredKey(r[2], r[3], r[4]) for r in rows}
        claimed = {key for key in leaders if key not in stored}
        created_at = sqlite_time(now)
        await self.connection.executemany(
            "INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint, "
            "response_status, response_body, created_at) VALUES (?, ?, ?, 0, '', ?)",
            [(key[0].hex, key[1], leaders[key], created_at) for key in claimed],
        )
        return claimed, stored

    async def lock_customers(
        self,
        by_id: set[tuple[uuid.UUID, str]],
        by_email: set[tuple[uuid.UUID, str]],
        by_uuid: set[tuple[uuid.UUID, uuid.UUID]],
    ) -> list[LockedCustomer]:
        parts: list[str] = []
        parameters: list[Any] = []
        wanted_by: tuple[tuple[str, set[Any]], ...] = (
            ("external_id", by_id),
            ("email", by_email),
            ("id", by_uuid),
        )
        for column, wanted in wanted_by:
            if wanted:
                parts.append(_CUSTOMERS_BY.format(values=_values(len(wanted)), column=column))
                parameters += _parameters(list(wanted))
        # The select list is the class's fields, in order.
        rows = await self._fetch(" UNION ".join(parts), parameters)
        locked = [LockedCustomer(*from_sqlite(LockedCustomer, row)) for row in rows]
        return sorted(locked, key=lambda customer: customer.key)

    async def load(self, request: Prefetch, snapshot: Snapshot, now: datetime) -> None:
        rewards = await self._fetch_rewards(request)
        for reward in rewards:
            snapshot.rewards.found((reward.merchant_id, reward.id), reward)
        for key in sorted(request.redeemed):
            found = await self._fetch(
                "SELECT count(*) FROM customer_rewards WHERE merchant_id = ? AND customer_id = ? "
                "AND reward_id = ? AND status <> 'revert'",
                _parameters([key]),
            )
            snapshot.redeemed.found(key, found[0][0])
        for row in await self._typed(
            CustomerRewardRow,
            f"SELECT {select_list(CustomerRewardRow, 'cr')} FROM ({{values}}) AS w "
            "CROSS JOIN customer_rewards cr ON cr.merchant_id = w.column1 AND cr.id = w.column2",
            sorted(request.customer_rewards),
            2,
        ):
            snapshot.customer_rewards.found((row.merchant_id, row.id), row)
        for row in await self._typed(
            CustomerRewardRow,
            f"SELECT {select_list(CustomerRewardRow, 'cr')} FROM ({{values}}) AS w "
            "CROSS JOIN customer_rewards cr ON cr.merchant_id = w.column1 "
            "AND cr.discount_code = w.column2",
            sorted(request.reward_codes),
            2,
        ):
            assert row.discount_code is not None
            snapshot.customer_reward_found((row.merchant_id, row.discount_code), row)
        for row in await self._typed(
            CustomerRewardRow,
            f"SELECT {select_list(CustomerRewardRow, 'cr')} FROM ({{values}}) AS w "
            "CROSS JOIN customer_rewards cr ON cr.merchant_id = w.column1 "
            "AND cr.customer_id = w.column2 AND cr.status IN ('active', 'inactive')",
            sorted(request.rewards_of),
            2,
        ):
            snapshot.live_reward_found(row)
        for order in await self._typed(
            OrderRow,
            f"SELECT {select_list(OrderRow, 'o')} FROM ({{values}}) AS w CROSS JOIN orders o "
            "ON o.merchant_id = w.column1 AND o.order_id = w.column2",
            sorted(request.orders),
            2,
        ):
            snapshot.orders.found((order.merchant_id, order.order_id), order)
        for rule in await self._typed(
            EarnRuleRow,
            f"SELECT {select_list(EarnRuleRow, 'r')} FROM ({{values}}) AS w "
            "CROSS JOIN earn_rules r ON r.merchant_id = w.column1 AND r.type = w.column2",
            sorted(request.earn_rules),
            2,
        ):
            snapshot.earn_rules.found((rule.merchant_id, rule.type), rule)
        for merchant_id, customer_id, action, since in request.action_counts:
            sql = (
                "SELECT count(*) FROM customer_actions WHERE merchant_id = ? "
                "AND customer_id = ? AND action = ?"
            )
            parameters: list[Any] = [merchant_id.hex, customer_id.hex, action]
            if since is not None:
                sql += " AND created_at >= ?"
                parameters.append(sqlite_time(since))
            found = await self._fetch(sql, parameters)
            snapshot.action_counts.found((merchant_id, customer_id, action, since), found[0][0])
        for wanted, join in (
            (request.pending, "p.id"),
            (request.pending_of, "p.customer_id AND p.status = 'pending'"),
        ):
            for pending in await self._typed(
                PendingRow,
                f"SELECT {select_list(PendingRow, 'p')} FROM ({{values}}) AS w "
                f"CROSS JOIN pending_credits p ON p.merchant_id = w.column1 AND w.column2 = {join}",
                sorted(wanted),
                2,
            ):
                snapshot.pending_found(pending)
        for lot in await self._typed(
            LotRow,
            f"SELECT {select_list(LotRow, 'l')} FROM ({{values}}) AS w CROSS JOIN point_lots l "
            "ON l.merchant_id = w.column1 AND l.customer_id = w.column2",
            sorted(request.lots),
            2,
        ):
            snapshot.lot_found(lot)
        if request.tiers:
            merchants = sorted(request.tiers)
            for tier in [
                TierRow(*from_sqlite(TierRow, row))
                for row in await self._fetch(
                    f"SELECT {select_list(TierRow, 't')} FROM tiers t WHERE t.merchant_id IN "
                    f"({', '.join(['?'] * len(merchants))}) "
                    "ORDER BY t.merchant_id, t.threshold_minor",
                    [m.hex for m in merchants],
                )
            ]:
                snapshot.tier_found(tier)
        await self._load_windows(request, snapshot, now)

    async def _fetch_rewards(self, request: Prefetch) -> list[RewardRow]:
        if not request.rewards:
            return []
        rows = await self._fetch(
            f"SELECT r.merchant_id, r.id, r.name, r.reward_type, r.points_cost_minor, "
            f"r.reward_rule, r.active, r.deleted_at IS NOT NULL, r.code_validity_days, "
            f"r.per_customer_limit FROM ({_values(len(request.rewards))}) AS w "
            f"CROSS JOIN rewards r ON r.merchant_id = w.column1 AND r.id = w.column2",
            _parameters(sorted(request.rewards)),
        )
        return [RewardRow(*from_sqlite(RewardRow, row)) for row in rows]

    async def _load_windows(self, request: Prefetch, snapshot: Snapshot, now: datetime) -> None:
        windows = (
            ("lifetime_points", "coalesce(sum(e.lifetime_delta_minor), 0), min(e.created_at)",
             "ledger_entries e ON e.merchant_id = w.column1 AND e.customer_id = w.column2 "
             "AND e.created_at > w.column3 AND e.lifetime_delta_minor <> 0"),
            ("amount_spent",
             "coalesce(sum(e.total_minor - e.refunded_minor), 0), min(e.placed_at)",
             "orders e ON e.merchant_id = w.column1 AND e.customer_id = w.column2 "
             "AND e.placed_at > w.column3 AND e.total_minor > e.refunded_minor"),
        )  # fmt: skip
        for basis, sums, join in windows:
            wanted = [
                (m, c, now - timedelta(days=days))
                for m, c, b, days in request.windows
                if b == basis
            ]
            if not wanted:
                continue
            for row in await self._fetch(
                f"SELECT w.column1, w.column2, {sums} FROM ({_values(len(wanted), 3)}) AS w "
                f"LEFT JOIN {join} GROUP BY w.column1, w.column2",
                _parameters(wanted),
            ):
                oldest = None if row[3] is None else datetime.fromisoformat(row[3])
                snapshot.windows.found(
                    (uuid.UUID(row[0]), uuid.UUID(row[1])),
                    WindowRow(row[2], None if oldest is None else oldest.replace(tzinfo=UTC)),
                )

    async def _many(self, name: str, sql: str, rows: list[Any], written: dict[str, int]) -> None:
        before = self.connection.total_changes
        if rows:
            await self.connection.executemany(sql, rows)
        written[name] = self.connection.total_changes - before

    async def write(self, changes: Changes, now: datetime) -> None:
        at = sqlite_time(now)
        written: dict[str, int] = {}
        assignments = ", ".join(f"{column} = ?" for column in BALANCE_COLUMNS)
        await self._many(
            "balances",
            f"UPDATE customer_balances SET {assignments}, updated_at = ? "
            "WHERE merchant_id = ? AND customer_id = ? AND last_sequence = ?",
            [
                (*to_sqlite(c, BALANCE_COLUMNS), at, c.merchant_id.hex, c.customer_id.hex,
                 c.initial_sequence)
                for c in changes.balances
            ],
            written,
        )  # fmt: skip
        customer_sets = ", ".join(f"{column} = ?" for column in CUSTOMER_COLUMNS)
        await self._many(
            "customers",
            f"UPDATE customers SET {customer_sets} WHERE merchant_id = ? AND id = ?",
            [
                (*to_sqlite(c, CUSTOMER_COLUMNS), c.merchant_id.hex, c.customer_id.hex)
                for c in changes.customers
            ],
            written,
        )
        await self._many(
            "entries",
            _insert("ledger_entries", EntryRow),
            [to_sqlite(e) for e in changes.entries],
            written,
        )
        await self._many(
            "events", _insert("events", EventRow), [to_sqlite(e) for e in changes.events], written
        )
        await self._many(
            "keys_stored",
            "UPDATE idempotency_keys SET response_status = ?, response_body = ? "
            "WHERE merchant_id = ? AND key = ?",
            [(status, body, m.hex, key) for m, key, status, body in changes.keys_stored],
            written,
        )
        await self._many(
            "keys_released",
            "DELETE FROM idempotency_keys WHERE merchant_id = ? AND key = ?",
            [(m.hex, key) for m, key in changes.keys_released],
            written,
        )
        await self._write_rows(changes, written)
        day = now.astimezone(UTC).date().isoformat()
        await self._many(
            "rollups",
            "INSERT INTO daily_rollups AS r "
            "(merchant_id, day, metric, shard, plus_minor, minus_minor, count) "
            "VALUES (?, ?, ?, 0, ?, ?, ?) "
            "ON CONFLICT (merchant_id, day, metric, shard) DO UPDATE SET "
            "plus_minor = r.plus_minor + excluded.plus_minor, "
            "minus_minor = r.minus_minor + excluded.minus_minor, "
            "count = r.count + excluded.count",
            [(m.hex, day, metric, *figures) for m, metric, *figures in changes.rollup_rows()],
            written,
        )
        written["erasures"] = 0
        for erasure in changes.erasures:
            written["erasures"] += await self._erase(erasure)
        check_counts(changes, written)

    async def _erase(self, erasure: ErasureRow) -> int:
        """Write one erasure (after the batch's other writes); the customers erased (1)."""
        key = (erasure.merchant_id.hex, erasure.customer_id.hex)
        before = self.connection.total_changes
        await self.connection.execute(_ERASE_CUSTOMER, (sqlite_time(erasure.updated_at), *key))
        erased = self.connection.total_changes - before
        if erasure.external_id is not None:
            rows = await self._fetch(_EVENTS_OF, (key[0], erasure.external_id) * 2)
            await self.connection.executemany(
                "UPDATE events SET payload = ?, customer_ref = NULL WHERE merchant_id = ? "
                "AND id = ?",
                [
                    (scrub_payload(kind, payload, erasure.external_id, erasure.email), key[0], id_)
                    for id_, kind, payload in rows
                ],
            )
        return erased

    async def _write_rows(self, changes: Changes, written: dict[str, int]) -> None:
        rewards = changes.customer_rewards
        reward_sets = ("status", "order_id", "revert_transaction_id", "used_at", "reverted_at",
                       "updated_at")  # fmt: skip
        pending_sets = ("status", "points_cancelled_minor", "transaction_id", "released_at",
                        "cancelled_at")  # fmt: skip
        order_sets = ("status", "refunded_minor", "points_removed_minor", "refund_points_minor",
                      "updated_at")  # fmt: skip
        key = ("merchant_id", "id")
        plan: list[tuple[str, str, list[Any]]] = [
            ("customer_rewards_new", _insert("customer_rewards", CustomerRewardRow),
             [to_sqlite(r) for r in rewards.new]),
            ("customer_rewards_changed",
             _update("customer_rewards", reward_sets, "AND status IN ('active', 'inactive')"),
             [to_sqlite(r, reward_sets + key) for r in rewards.changed]),
            ("lots_new", _insert("point_lots", LotRow), [to_sqlite(r) for r in changes.lots_new]),
            ("lots_changed", _update("point_lots", ("remaining_minor",)),
             [to_sqlite(r, ("remaining_minor", *key)) for r in changes.lots_changed]),
            ("lots_closed", "DELETE FROM point_lots WHERE merchant_id = ? AND id = ?",
             [to_sqlite(r, key) for r in changes.lots_closed]),
            ("pending_new", _insert("pending_credits", PendingRow),
             [to_sqlite(r) for r in changes.pending.new]),
            ("pending_changed", _update("pending_credits", pending_sets, "AND status = 'pending'"),
             [to_sqlite(r, pending_sets + key) for r in changes.pending.changed]),
            ("orders_new", _insert("orders", OrderRow), [to_sqlite(r) for r in changes.orders.new]),
            ("orders_changed", _update("orders", order_sets),
             [to_sqlite(r, order_sets + key) for r in changes.orders.changed]),
            ("refunds", _insert("order_refunds", RefundRow),
             [to_sqlite(r) for r in changes.refunds]),
            ("actions", _insert("customer_actions", ActionRow),
             [to_sqlite(r) for r in changes.actions]),
        ]  # fmt: skip
        for name, sql, rows in plan:
            await self._many(name, sql, rows, written)


_ERASE_CUSTOMER = """
UPDATE customers
SET external_id = NULL, email = NULL, first_name = NULL, last_name = NULL,
    first_name_search = NULL, last_name_search = NULL, date_of_birth = NULL,
    status = 'erased', status_reason = NULL, referral_code = NULL, referred_by = NULL,
    updated_at = ?
WHERE merchant_id = ? AND id = ? AND status <> 'erased'
"""
# Numbered and unnumbered events each through their partial index.
_EVENTS_OF = """
SELECT id, type, payload FROM events
WHERE merchant_id = ? AND customer_ref = ? AND sequence IS NOT NULL
UNION ALL
SELECT id, type, payload FROM events
WHERE merchant_id = ? AND sequence IS NULL AND customer_ref = ?
"""


def _update(table: str, set_columns: tuple[str, ...], guard: str = "") -> str:
    sets = ", ".join(f"{column} = ?" for column in set_columns)
    return f"UPDATE {table} SET {sets} WHERE merchant_id = ? AND id = ? {guard}"


class SqliteStore:
    """Batches on the database's one writer connection, under its write lock."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[SqliteSession]:
        connection = self.database.sqlite_writer
        assert connection is not None, "Database.start() opens the writer connection"
        async with self.database.write_lock:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteSession(connection)
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")
        self.database.events_wakeup.poke()  # committed: its events can be delivered

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, sqlite3.IntegrityError):
            # A new discount code met an existing one: the batch is planned again with new
            # codes (or an order met the same order_id of another batch: planned again).
            return "customer_rewards.discount_code" in str(error) or "orders.order_id" in str(error)
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    def is_unavailable(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and (
            "disk" in str(error) or "unable to open" in str(error)
        )
