"""The ledger's batch I/O on SQLite, straight on aiosqlite.

The writer holds SQLite's write lock for the whole batch (BEGIN IMMEDIATE),
so reading keys and balances and then writing needs no further locking.
Values are stored in the same forms SQLAlchemy uses on SQLite: UUIDs as 32
hex characters, datetimes as naive UTC text, booleans as 0/1.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite

from loyalty.errors import invariant
from loyalty.ledger import actions, lifecycle, orders, redemptions
from loyalty.ledger.batch import (
    BALANCE_COLUMNS,
    LOCKED_COLUMNS,
    CustomerKey,
    KeyRef,
    LockedCustomer,
    Movement,
    Plan,
    StoredKey,
    customer_references,
    index_customers,
    key_leaders,
)

_CUSTOMERS_BY = """
SELECT c.merchant_id, c.id, c.external_id, c.email,
       b.points_balance_minor, b.lifetime_points_minor, b.points_spent_minor,
       b.points_expired_minor, b.last_sequence, s.points_decimals, s.default_description,
       c.status, s.discount_code_prefix, b.pending_points_minor, c.total_spent_minor,
       b.last_activity_at, b.expiring_lots_minor, b.next_expiry_at, b.next_expiry_minor,
       b.tier_id, b.tier_expires_at, b.tier_recheck_at, s.expiry_policy, s.expiry_days,
       s.expiry_changed_at, s.tier_basis, s.tier_window_days, c.rewarded_actions,
       c.referred_by, c.referral_completed_at, c.referred_completed
FROM ({values}) AS w
CROSS JOIN customers c ON c.merchant_id = w.column1 AND c.{column} = w.column2
JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
JOIN program_settings s ON s.merchant_id = c.merchant_id
"""


def sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _time(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


def _values(count: int, width: int = 2) -> str:
    """``VALUES (?, ?), ...``: joined from, so that SQLite searches by index."""
    row = "(" + ", ".join(["?"] * width) + ")"
    return "VALUES " + ", ".join([row] * count)


def _parameters(rows: list[tuple[Any, ...]]) -> list[Any]:
    """Flattened, UUIDs as the hex text SQLite stores."""
    return [value.hex if isinstance(value, uuid.UUID) else value for row in rows for value in row]


async def claim_keys(
    connection: aiosqlite.Connection, movements: list[Movement], now: datetime
) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
    leaders = key_leaders(movements)
    if not leaders:
        return set(), {}
    parameters: list[Any] = []
    for merchant_id, key in leaders:
        parameters += [merchant_id.hex, key]
    cursor = await connection.execute(
        f"WITH wanted(merchant_id, key) AS ({_values(len(leaders))}) "
        "SELECT k.merchant_id, k.key, k.request_fingerprint, k.response_status, "
        "k.response_body FROM wanted w JOIN idempotency_keys k "
        "ON k.merchant_id = w.merchant_id AND k.key = w.key",
        parameters,
    )
    stored: dict[KeyRef, StoredKey] = {}
    for row in await cursor.fetchall():
        stored[(uuid.UUID(row[0]), row[1])] = StoredKey(row[2], row[3], row[4])
    claimed = {key for key in leaders if key not in stored}
    created_at = sqlite_time(now)
    await connection.executemany(
        "INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint, response_status, "
        "response_body, created_at) VALUES (?, ?, ?, 0, '', ?)",
        [(key[0].hex, key[1], leaders[key], created_at) for key in claimed],
    )
    return claimed, stored


async def lock_customers(
    connection: aiosqlite.Connection, movements: list[Movement]
) -> dict[CustomerKey, LockedCustomer]:
    by_id, by_email = customer_references(movements)
    parts: list[str] = []
    parameters: list[Any] = []
    for column, wanted in (("external_id", by_id), ("email", by_email)):
        if wanted:
            parts.append(_CUSTOMERS_BY.format(values=_values(len(wanted)), column=column))
            for merchant_id, value in wanted:
                parameters += [merchant_id.hex, value]
    cursor = await connection.execute(" UNION ".join(parts), parameters)
    locked: list[LockedCustomer] = []
    for row in await cursor.fetchall():
        locked.append(
            LockedCustomer(
                merchant_id=uuid.UUID(row[0]),
                customer_id=uuid.UUID(row[1]),
                external_id=row[2],
                email=row[3],
                **{
                    column: _loaded(column, value)
                    for column, value in zip(LOCKED_COLUMNS, row[4:], strict=True)
                },
            )
        )
    return index_customers(locked)


async def apply_plan(connection: aiosqlite.Connection, plan: Plan, now: datetime) -> None:
    updated_at = sqlite_time(now)
    changes_before = connection.total_changes
    assignments = ", ".join(f"{column} = ?" for column in BALANCE_COLUMNS)
    await connection.executemany(
        f"UPDATE customer_balances SET {assignments}, updated_at = ? "
        "WHERE merchant_id = ? AND customer_id = ? AND last_sequence = ?",
        [
            (
                *(_stored(c, v) for c, v in zip(BALANCE_COLUMNS, row[2:-1], strict=True)),
                updated_at,
                row[0].hex,
                row[1].hex,
                row[-1],
            )
            for row in plan.balance_updates
        ],
    )
    invariant(
        connection.total_changes - changes_before == len(plan.balance_updates),
        "every locked balance is updated once",
    )
    await connection.executemany(
        "INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind, "
        "description, internal_note, visible_to_customer, apply_to_lifetime, "
        "lifetime_delta_minor, balance_after_minor, expires_at, earn_rule_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e["merchant_id"].hex,
                e["id"].hex,
                e["customer_id"].hex,
                e["sequence"],
                e["points_minor"],
                e["kind"],
                e["description"],
                e["internal_note"],
                int(e["visible_to_customer"]),
                int(e["apply_to_lifetime"]),
                e["lifetime_delta_minor"],
                e["balance_after_minor"],
                _time(e["expires_at"]),
                _stored("earn_rule_id", e["earn_rule_id"]),
                updated_at,
            )
            for e in plan.entries
        ],
    )
    await connection.executemany(
        "INSERT INTO events (merchant_id, id, type, subject_id, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                e["merchant_id"].hex,
                e["id"].hex,
                e["type"],
                e["subject_id"].hex,
                e["payload"],
                updated_at,
            )
            for e in plan.events
        ],
    )
    await connection.executemany(
        "UPDATE idempotency_keys SET response_status = ?, response_body = ? "
        "WHERE merchant_id = ? AND key = ?",
        [(status, body, m.hex, key) for m, key, status, body in plan.key_updates],
    )
    await connection.executemany(
        "DELETE FROM idempotency_keys WHERE merchant_id = ? AND key = ?",
        [(m.hex, key) for m, key in plan.key_deletes],
    )


_UUID_COLUMNS = frozenset(
    {"merchant_id", "id", "customer_id", "reward_id", "redeem_transaction_id",
     "revert_transaction_id", "tier_id", "transaction_id", "earn_rule_id", "pending_id",
     "order_row_id", "referred_by"}
)  # fmt: skip


def _stored(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _UUID_COLUMNS:
        return value.hex
    if column.endswith("_at"):
        return sqlite_time(value)
    return value


def _loaded(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _UUID_COLUMNS:
        return uuid.UUID(value)
    if column.endswith("_at"):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


async def load_reward_context(
    connection: aiosqlite.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
) -> redemptions.RewardContext:
    context = redemptions.RewardContext()
    wanted = redemptions.reward_keys(movements)
    if wanted:
        cursor = await connection.execute(
            f"SELECT r.merchant_id, r.id, r.name, r.reward_type, r.points_cost_minor, "
            f"r.reward_rule, r.active, r.deleted_at IS NOT NULL, r.code_validity_days, "
            f"r.per_customer_limit FROM ({_values(len(wanted))}) AS w CROSS JOIN rewards r "
            f"ON r.merchant_id = w.column1 AND r.id = w.column2",
            _parameters(wanted),
        )
        for row in await cursor.fetchall():
            reward = redemptions.CatalogueReward(
                uuid.UUID(row[0]), uuid.UUID(row[1]), row[2], row[3], row[4], row[5],
                bool(row[6]), bool(row[7]), row[8], row[9],
            )  # fmt: skip
            context.rewards[(reward.merchant_id, reward.id)] = reward
        counted = redemptions.counted_keys(movements, customers, context)
        if counted:
            cursor = await connection.execute(
                f"SELECT w.column1, w.column2, w.column3, count(cr.id) "
                f"FROM ({_values(len(counted), 3)}) AS w CROSS JOIN customer_rewards cr "
                f"ON cr.merchant_id = w.column1 AND cr.customer_id = w.column2 "
                f"AND cr.reward_id = w.column3 AND cr.status <> 'revert' "
                f"GROUP BY w.column1, w.column2, w.column3",
                _parameters(counted),
            )
            for row in await cursor.fetchall():
                key = (uuid.UUID(row[0]), uuid.UUID(row[1]), uuid.UUID(row[2]))
                context.redeemed[key] = row[3]
    held = redemptions.held_keys(movements)
    if held:
        columns = ", ".join(f"cr.{column}" for column in redemptions.CUSTOMER_REWARD_COLUMNS)
        for values in await _select(
            connection,
            f"SELECT {columns} FROM ({_values(len(held))}) AS w CROSS JOIN customer_rewards cr "
            f"ON cr.merchant_id = w.column1 AND cr.id = w.column2",
            _parameters(held),
            redemptions.CUSTOMER_REWARD_COLUMNS,
        ):
            context.held[(values["merchant_id"], values["id"])] = values
    return context


async def apply_rewards(
    connection: aiosqlite.Connection, writes: redemptions.RewardWrites, now: datetime
) -> None:
    at = sqlite_time(now)
    await connection.executemany(
        f"INSERT INTO customer_rewards ({', '.join(redemptions.CUSTOMER_REWARD_COLUMNS)}) "
        f"VALUES ({', '.join(['?'] * len(redemptions.CUSTOMER_REWARD_COLUMNS))})",
        [
            [_stored(c, row[c]) for c in redemptions.CUSTOMER_REWARD_COLUMNS]
            for row in writes.inserts
        ],
    )
    changes_before = connection.total_changes
    await connection.executemany(
        "UPDATE customer_rewards SET status = 'revert', revert_transaction_id = ?, "
        "reverted_at = ?, updated_at = ? WHERE merchant_id = ? AND id = ? AND status = 'active'",
        [(t.hex, at, at, m.hex, i.hex) for m, i, t in writes.reverts],
    )
    invariant(
        connection.total_changes - changes_before == len(writes.reverts),
        "every revert finds its active reward",
    )
    changes_before = connection.total_changes
    await connection.executemany(
        "UPDATE customer_balances SET store_credit_balance_minor = store_credit_balance_minor + ? "
        "WHERE merchant_id = ? AND customer_id = ?",
        [(amount, m.hex, c.hex) for (m, c), amount in writes.store_credit.items()],
    )
    invariant(
        connection.total_changes - changes_before == len(writes.store_credit),
        "every store credit reaches a balance",
    )


async def _select(
    connection: aiosqlite.Connection, sql: str, parameters: list[Any], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    cursor = await connection.execute(sql, parameters)
    return [
        {column: _loaded(column, value) for column, value in zip(columns, row, strict=True)}
        for row in await cursor.fetchall()
    ]


async def load_lifecycle_context(
    connection: aiosqlite.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
    now: datetime,
    also_pending: list[tuple[Any, Any]] | None = None,
) -> lifecycle.LifecycleContext:
    """Lots, pending credits, tiers and windows (the write lock is held: nothing changes)."""
    context = lifecycle.LifecycleContext()
    locked = list({(c.merchant_id, c.customer_id): c for c in customers.values()}.values())
    owners = lifecycle.lot_owners(locked)
    if owners:
        columns = ", ".join(f"l.{c}" for c in lifecycle.LOT_COLUMNS)
        for row in await _select(
            connection,
            f"SELECT {columns} FROM ({_values(len(owners))}) AS w CROSS JOIN point_lots l "
            "ON l.merchant_id = w.column1 AND l.customer_id = w.column2",
            _parameters(owners),
            lifecycle.LOT_COLUMNS,
        ):
            lot = lifecycle.Lot(
                row["id"], row["remaining_minor"], row["expires_at"], row["created_at"],
                stored_remaining_minor=row["remaining_minor"],
            )  # fmt: skip
            context.lots.setdefault((row["merchant_id"], row["customer_id"]), []).append(lot)
    pending_columns = ", ".join(f"p.{c}" for c in lifecycle.PENDING_COLUMNS)
    named = lifecycle.pending_ids(movements, also_pending)
    holders = lifecycle.pending_owners(movements, locked)
    for wanted, join in ((named, "p.id"), (holders, "p.customer_id AND p.status = 'pending'")):
        if not wanted:
            continue
        for row in await _select(
            connection,
            f"SELECT {pending_columns} FROM ({_values(len(wanted))}) AS w "
            f"CROSS JOIN pending_credits p ON p.merchant_id = w.column1 AND w.column2 = {join}",
            _parameters(wanted),
            lifecycle.PENDING_COLUMNS,
        ):
            row["visible_to_customer"] = bool(row["visible_to_customer"])
            row["apply_to_lifetime"] = bool(row["apply_to_lifetime"])
            context.pending[(row["merchant_id"], row["id"])] = row
    merchants = lifecycle.tier_merchants(locked)
    if merchants:
        tier_columns = (
            "merchant_id", "id", "name", "threshold_minor", "retention_days",
            "multiplier_hundredths",
        )  # fmt: skip
        for row in await _select(
            connection,
            f"SELECT {', '.join(tier_columns)} FROM tiers WHERE merchant_id IN "
            f"({', '.join(['?'] * len(merchants))}) ORDER BY merchant_id, threshold_minor",
            [m.hex for m in merchants],
            tier_columns,
        ):
            tier = lifecycle.Tier(
                row["id"], row["name"], row["threshold_minor"], row["retention_days"],
                row["multiplier_hundredths"],
            )  # fmt: skip
            context.tiers.setdefault(row["merchant_id"], []).append(tier)
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
            windowed = lifecycle.window_owners(locked, basis)
            if not windowed:
                continue
            rows = [(m, c, sqlite_time(now - timedelta(days=days))) for m, c, days in windowed]
            for row in await _select(
                connection,
                f"SELECT w.column1, w.column2, {sums} FROM ({_values(len(rows), 3)}) AS w "
                f"LEFT JOIN {join} GROUP BY w.column1, w.column2",
                _parameters(rows),
                ("merchant_id", "customer_id", "total", "oldest_at"),
            ):
                context.windows[(row["merchant_id"], row["customer_id"])] = lifecycle.Window(
                    row["total"], row["oldest_at"]
                )
    return context


async def _executemany_checked(
    connection: aiosqlite.Connection, sql: str, rows: list[Any], what: str
) -> None:
    changes_before = connection.total_changes
    await connection.executemany(sql, rows)
    invariant(connection.total_changes - changes_before == len(rows), what)


async def apply_lifecycle(
    connection: aiosqlite.Connection, writes: lifecycle.LifecycleWrites
) -> None:
    await _executemany_checked(
        connection,
        f"INSERT INTO point_lots ({', '.join(lifecycle.LOT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
        [[_stored(c, row[c]) for c in lifecycle.LOT_COLUMNS] for row in writes.lot_inserts],
        "every new lot is stored",
    )
    await _executemany_checked(
        connection,
        "UPDATE point_lots SET remaining_minor = ? WHERE merchant_id = ? AND id = ?",
        [(remaining, m.hex, i.hex) for m, i, remaining in writes.lot_updates],
        "every spent lot exists",
    )
    await _executemany_checked(
        connection,
        "DELETE FROM point_lots WHERE merchant_id = ? AND id = ?",
        [(m.hex, i.hex) for m, i in writes.lot_deletes],
        "every closed lot exists",
    )
    columns = lifecycle.PENDING_COLUMNS
    await _executemany_checked(
        connection,
        f"INSERT INTO pending_credits ({', '.join(columns)}) "
        f"VALUES ({', '.join(['?'] * len(columns))})",
        [[_stored(c, row[c]) for c in columns] for row in writes.pending_inserts],
        "every hold is stored",
    )
    await _executemany_checked(
        connection,
        "UPDATE pending_credits SET status = ?, transaction_id = ?, "
        "released_at = CASE WHEN ? = 'released' THEN ? END, "
        "cancelled_at = CASE WHEN ? = 'cancelled' THEN ? END "
        "WHERE merchant_id = ? AND id = ? AND status = 'pending'",
        [
            (
                status,
                _stored("transaction_id", t),
                status,
                sqlite_time(at),
                status,
                sqlite_time(at),
                m.hex,
                i.hex,
            )
            for m, i, status, t, at in writes.pending_updates
        ],
        "every released or cancelled credit was pending",
    )
    await _executemany_checked(
        connection,
        "UPDATE pending_credits SET points_minor = ? "
        "WHERE merchant_id = ? AND id = ? AND status = 'pending'",
        [(points, m.hex, i.hex) for m, i, points in writes.pending_shrinks],
        "every shrunk hold is pending",
    )


async def load_order_context(
    connection: aiosqlite.Connection, movements: list[Movement]
) -> orders.OrderContext:
    context = orders.OrderContext()
    keys = orders.order_keys(movements)
    if keys:
        columns = ", ".join(f"o.{c}" for c in orders.ORDER_COLUMNS)
        for row in await _select(
            connection,
            f"SELECT {columns} FROM ({_values(len(keys))}) AS w CROSS JOIN orders o "
            "ON o.merchant_id = w.column1 AND o.order_id = w.column2",
            _parameters(keys),
            orders.ORDER_COLUMNS,
        ):
            context.orders[(row["merchant_id"], row["order_id"])] = row
    merchants = orders.rule_merchants(movements)
    if merchants:
        rule_columns = (
            "merchant_id", "type", "id", "points_minor", "active",
            "points_per_currency_unit_minor", "rounding", "min_order_total_minor",
            "pending_days", "referee_points_minor", "max_per_customer",
        )  # fmt: skip
        for row in await _select(
            connection,
            f"SELECT {', '.join(rule_columns)} FROM earn_rules "
            f"WHERE type IN ('purchase', 'referral') "
            f"AND merchant_id IN ({', '.join(['?'] * len(merchants))})",
            [m.hex for m in merchants],
            rule_columns,
        ):
            orders.add_rule(context, row)
    codes = orders.code_keys(movements)
    if codes:
        columns = ", ".join(f"cr.{c}" for c in redemptions.CUSTOMER_REWARD_COLUMNS)
        for row in await _select(
            connection,
            f"SELECT {columns} FROM ({_values(len(codes))}) AS w CROSS JOIN customer_rewards cr "
            "ON cr.merchant_id = w.column1 AND cr.discount_code = w.column2",
            _parameters(codes),
            redemptions.CUSTOMER_REWARD_COLUMNS,
        ):
            context.codes[(row["merchant_id"], row["discount_code"])] = row
    return context


async def apply_orders(
    connection: aiosqlite.Connection, writes: orders.OrderWrites, now: datetime
) -> None:
    columns = orders.ORDER_COLUMNS
    await _executemany_checked(
        connection,
        f"INSERT INTO orders ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})",
        [[_stored(c, row[c]) for c in columns] for row in writes.inserts],
        "every new order is stored",
    )
    await _executemany_checked(
        connection,
        "UPDATE orders SET status = ?, refunded_minor = ?, points_removed_minor = ?, "
        "updated_at = ? WHERE merchant_id = ? AND id = ?",
        [
            (
                r["status"],
                r["refunded_minor"],
                r["points_removed_minor"],
                sqlite_time(r["updated_at"]),
                r["merchant_id"].hex,
                r["id"].hex,
            )
            for r in writes.updates
        ],
        "every changed order exists",
    )
    refund_columns = orders.REFUND_COLUMNS
    await _executemany_checked(
        connection,
        f"INSERT INTO order_refunds ({', '.join(refund_columns)}) "
        f"VALUES ({', '.join(['?'] * len(refund_columns))})",
        [[_stored(c, row[c]) for c in refund_columns] for row in writes.refunds],
        "every refund is stored",
    )
    await _executemany_checked(
        connection,
        "UPDATE customers SET total_spent_minor = total_spent_minor + ? "
        "WHERE merchant_id = ? AND id = ?",
        [(amount, m.hex, c.hex) for (m, c), amount in writes.spend.items()],
        "every spend reaches its customer",
    )
    at = sqlite_time(now)
    await _executemany_checked(
        connection,
        "UPDATE customer_rewards SET status = 'used', used_at = ?, order_id = ?, updated_at = ? "
        "WHERE merchant_id = ? AND id = ? AND status = 'active'",
        [(at, order_id, at, m.hex, i.hex) for m, i, order_id in writes.rewards_used],
        "every used code was active",
    )
    await _executemany_checked(
        connection,
        "UPDATE customers SET referral_completed_at = ? "
        "WHERE merchant_id = ? AND id = ? AND referral_completed_at IS NULL",
        [(at, m.hex, referee.hex) for m, referee, _ in writes.referrals],
        "a referral completes once",
    )
    await _executemany_checked(
        connection,
        "UPDATE customers SET referred_completed = referred_completed + ? "
        "WHERE merchant_id = ? AND id = ?",
        [(n, m.hex, c.hex) for m, c, n in orders.referrer_counts(writes)],
        "every referrer is counted",
    )


async def load_action_context(
    connection: aiosqlite.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
    now: datetime,
) -> actions.ActionContext:
    context = actions.ActionContext()
    keys = actions.action_keys(movements)
    columns = ("merchant_id", "type", "id", "points_minor", "active", "max_per_customer",
               "period_days")  # fmt: skip
    for row in await _select(
        connection,
        f"SELECT {', '.join('r.' + c for c in columns)} FROM ({_values(len(keys))}) AS w "
        "CROSS JOIN earn_rules r ON r.merchant_id = w.column1 AND r.type = w.column2",
        _parameters(keys),
        columns,
    ):
        context.rules[(row["merchant_id"], row["type"])] = actions.ActionRule(
            row["id"], row["points_minor"], bool(row["active"]), row["max_per_customer"],
            row["period_days"],
        )  # fmt: skip
    for merchant_id, customer_id, action, since in actions.count_keys(
        movements, customers, context, now
    ):
        sql = (
            "SELECT count(*) FROM customer_actions WHERE merchant_id = ? AND customer_id = ? "
            "AND action = ?"
        )
        parameters: list[Any] = [merchant_id.hex, customer_id.hex, action]
        if since is not None:
            sql += " AND created_at >= ?"
            parameters.append(sqlite_time(since))
        cursor = await connection.execute(sql, parameters)
        found = await cursor.fetchone()
        context.counts[(merchant_id, customer_id, action)] = found[0] if found else 0
    return context


async def apply_actions(connection: aiosqlite.Connection, writes: actions.ActionWrites) -> None:
    columns = actions.ACTION_COLUMNS
    await _executemany_checked(
        connection,
        f"INSERT INTO customer_actions ({', '.join(columns)}) "
        f"VALUES ({', '.join(['?'] * len(columns))})",
        [[_stored(c, row[c]) for c in columns] for row in writes.inserts],
        "every rewarded action is stored",
    )
    await _executemany_checked(
        connection,
        "UPDATE customers SET rewarded_actions = ? WHERE merchant_id = ? AND id = ?",
        [(text, m.hex, c.hex) for (m, c), text in writes.rewarded.items()],
        "every customer's flags are stored",
    )


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sqlite3.IntegrityError):
        # A new discount code met an existing one: the batch is planned again with new codes.
        # (or an order met the same order_id of another batch: planned again.)
        return "customer_rewards.discount_code" in str(error) or "orders.order_id" in str(error)
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def is_unavailable(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and (
        "disk" in str(error) or "unable to open" in str(error)
    )
