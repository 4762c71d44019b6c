"""The ledger's batch I/O on Postgres, straight on asyncpg (prepared statements).

A batch is: claim its idempotency keys (one INSERT over unnest), read the
replies stored under keys already used, lock its customers' balances in a
fixed order (no deadlock between batches), then apply every write in one
statement of data-modifying CTEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from loyalty.db.engine import is_unavailable as database_unavailable
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

_CLAIM_KEYS = """
INSERT INTO idempotency_keys
    (merchant_id, key, request_fingerprint, response_status, response_body, created_at)
SELECT t.merchant_id, t.key, t.fingerprint, 0, '', $4
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(merchant_id, key, fingerprint)
ORDER BY t.merchant_id, t.key
ON CONFLICT DO NOTHING
RETURNING merchant_id, key
"""

_STORED_KEYS = """
SELECT k.merchant_id, k.key, k.request_fingerprint, k.response_status, k.response_body
FROM idempotency_keys k
JOIN unnest($1::uuid[], $2::text[]) AS t(merchant_id, key)
  ON k.merchant_id = t.merchant_id AND k.key = t.key
"""

# Each kind of identifier joins through its own unique index; the balances are
# locked in (merchant_id, customer_id) order so concurrent batches never deadlock.
_LOCK_CUSTOMERS = """
WITH wanted AS (
    SELECT c.merchant_id, c.id
    FROM unnest($1::uuid[], $2::text[]) AS r(merchant_id, external_id)
    JOIN customers c ON c.merchant_id = r.merchant_id AND c.external_id = r.external_id
    UNION
    SELECT c.merchant_id, c.id
    FROM unnest($3::uuid[], $4::text[]) AS r(merchant_id, email)
    JOIN customers c ON c.merchant_id = r.merchant_id AND c.email = r.email
)
SELECT c.merchant_id, c.id, c.external_id, c.email, c.status, c.total_spent_minor,
       c.rewarded_actions, c.referred_by, c.referral_completed_at, c.referred_completed,
       b.points_balance_minor, b.lifetime_points_minor, b.points_spent_minor,
       b.points_expired_minor, b.last_sequence, b.pending_points_minor, b.last_activity_at,
       b.expiring_lots_minor, b.next_expiry_at, b.next_expiry_minor, b.tier_id,
       b.tier_expires_at, b.tier_recheck_at,
       s.points_decimals, s.default_description, s.discount_code_prefix, s.expiry_policy,
       s.expiry_days, s.expiry_changed_at, s.tier_basis, s.tier_window_days
FROM wanted w
JOIN customers c ON c.merchant_id = w.merchant_id AND c.id = w.id
JOIN customer_balances b ON b.merchant_id = c.merchant_id AND b.customer_id = c.id
JOIN program_settings s ON s.merchant_id = c.merchant_id
ORDER BY c.merchant_id, c.id
FOR UPDATE OF b
"""

_APPLY = """
WITH balances AS (
    UPDATE customer_balances AS b
    SET points_balance_minor = v.balance, lifetime_points_minor = v.lifetime,
        points_spent_minor = v.spent, points_expired_minor = v.expired,
        pending_points_minor = v.pending, last_sequence = v.sequence,
        last_activity_at = v.activity, expiring_lots_minor = v.lots,
        next_expiry_at = v.next_at, next_expiry_minor = v.next_minor, tier_id = v.tier,
        tier_expires_at = v.tier_expires, tier_recheck_at = v.recheck, updated_at = $1
    FROM unnest($2::uuid[], $3::uuid[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
                $8::int8[], $9::int8[], $10::timestamptz[], $11::int8[], $12::timestamptz[],
                $13::int8[], $14::uuid[], $15::timestamptz[], $16::timestamptz[], $17::int8[])
        AS v(merchant_id, customer_id, balance, lifetime, spent, expired, pending, sequence,
             activity, lots, next_at, next_minor, tier, tier_expires, recheck, previous)
    WHERE b.merchant_id = v.merchant_id AND b.customer_id = v.customer_id
      AND b.last_sequence = v.previous
    RETURNING 1
), entries AS (
    INSERT INTO ledger_entries
        (merchant_id, id, customer_id, sequence, points_minor, kind, description,
         internal_note, visible_to_customer, apply_to_lifetime, lifetime_delta_minor,
         balance_after_minor, expires_at, earn_rule_id, created_at)
    SELECT e.*, $1 FROM unnest($18::uuid[], $19::uuid[], $20::uuid[], $21::int8[], $22::int8[],
                               $23::text[], $24::text[], $25::text[], $26::bool[], $27::bool[],
                               $28::int8[], $29::int8[], $30::timestamptz[], $31::uuid[]) AS e
    RETURNING 1
), new_events AS (
    INSERT INTO events (merchant_id, id, type, subject_id, payload, created_at)
    SELECT v.*, $1 FROM unnest($32::uuid[], $33::uuid[], $34::text[], $35::uuid[], $36::text[])
        AS v
    RETURNING 1
), stored_keys AS (
    UPDATE idempotency_keys AS k
    SET response_status = v.status, response_body = v.body
    FROM unnest($37::uuid[], $38::text[], $39::int4[], $40::text[])
        AS v(merchant_id, key, status, body)
    WHERE k.merchant_id = v.merchant_id AND k.key = v.key
    RETURNING 1
), released_keys AS (
    DELETE FROM idempotency_keys AS k
    USING unnest($41::uuid[], $42::text[]) AS v(merchant_id, key)
    WHERE k.merchant_id = v.merchant_id AND k.key = v.key
    RETURNING 1
)
SELECT (SELECT count(*) FROM balances) AS balances,
       (SELECT count(*) FROM entries) AS entries,
       (SELECT count(*) FROM new_events) AS events,
       (SELECT count(*) FROM stored_keys) AS stored_keys,
       (SELECT count(*) FROM released_keys) AS released_keys
"""


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


async def claim_keys(
    connection: asyncpg.Connection, movements: list[Movement], now: datetime
) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
    """Claim each distinct key; return those claimed and what others hold."""
    leaders = key_leaders(movements)
    if not leaders:
        return set(), {}
    merchants, keys, fingerprints = _columns(
        [(key[0], key[1], fingerprint) for key, fingerprint in leaders.items()], 3
    )
    rows = await connection.fetch(_CLAIM_KEYS, merchants, keys, fingerprints, now)
    claimed = {(row["merchant_id"], row["key"]) for row in rows}
    taken = [key for key in leaders if key not in claimed]
    stored: dict[KeyRef, StoredKey] = {}
    if taken:
        taken_merchants, taken_keys = _columns(taken, 2)
        for row in await connection.fetch(_STORED_KEYS, taken_merchants, taken_keys):
            stored[(row["merchant_id"], row["key"])] = StoredKey(
                row["request_fingerprint"], row["response_status"], row["response_body"]
            )
    return claimed, stored


async def lock_customers(
    connection: asyncpg.Connection, movements: list[Movement]
) -> dict[CustomerKey, LockedCustomer]:
    by_id, by_email = customer_references(movements)
    id_merchants, ids = _columns(list(by_id), 2) if by_id else ([], [])
    email_merchants, emails = _columns(list(by_email), 2) if by_email else ([], [])
    rows = await connection.fetch(_LOCK_CUSTOMERS, id_merchants, ids, email_merchants, emails)
    locked: list[LockedCustomer] = []
    for row in rows:
        locked.append(
            LockedCustomer(
                merchant_id=row["merchant_id"],
                customer_id=row["id"],
                external_id=row["external_id"],
                email=row["email"],
                **{column: row[column] for column in LOCKED_COLUMNS},
            )
        )
    return index_customers(locked)


_ENTRY_COLUMNS = (
    "merchant_id", "id", "customer_id", "sequence", "points_minor", "kind", "description",
    "internal_note", "visible_to_customer", "apply_to_lifetime", "lifetime_delta_minor",
    "balance_after_minor", "expires_at", "earn_rule_id",
)  # fmt: skip
_EVENT_COLUMNS = ("merchant_id", "id", "type", "subject_id", "payload")


async def apply_plan(connection: asyncpg.Connection, plan: Plan, now: datetime) -> None:
    """All of the batch's writes in one statement; checks every count."""
    balances = _columns(plan.balance_updates, len(BALANCE_COLUMNS) + 3)
    entries = _columns([[e[c] for c in _ENTRY_COLUMNS] for e in plan.entries], 14)
    events = _columns([[e[c] for c in _EVENT_COLUMNS] for e in plan.events], 5)
    stored = _columns(plan.key_updates, 4)
    released = _columns(plan.key_deletes, 2)
    row = await connection.fetchrow(_APPLY, now, *balances, *entries, *events, *stored, *released)
    assert row is not None
    invariant(row["balances"] == len(plan.balance_updates), "every locked balance is updated once")
    invariant(row["entries"] == len(plan.entries), "every accepted movement has its entry")
    invariant(row["events"] == len(plan.events), "every accepted movement has its event")
    invariant(row["stored_keys"] == len(plan.key_updates), "every claimed key stores its reply")
    invariant(row["released_keys"] == len(plan.key_deletes), "refused requests release keys")


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

_HELD = """
SELECT cr.*
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, id)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.id = t.id
ORDER BY cr.merchant_id, cr.id
FOR UPDATE OF cr
"""

_APPLY_REWARDS = """
WITH inserted AS (
    INSERT INTO customer_rewards
        (merchant_id, id, customer_id, reward_id, reward_type, reward_name, reward_rule, status,
         discount_code, points_used_minor, store_credit_minor, order_id, redeem_transaction_id,
         revert_transaction_id, expires_at, used_at, reverted_at, created_at, updated_at)
    SELECT v.*, $1, $1
    FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], $13::text[],
                $14::uuid[], $15::uuid[], $16::timestamptz[], $17::timestamptz[],
                $18::timestamptz[]) AS v
    RETURNING 1
), reverted AS (
    UPDATE customer_rewards AS cr
    SET status = 'revert', revert_transaction_id = v.transaction_id, reverted_at = $1,
        updated_at = $1
    FROM unnest($19::uuid[], $20::uuid[], $21::uuid[]) AS v(merchant_id, id, transaction_id)
    WHERE cr.merchant_id = v.merchant_id AND cr.id = v.id AND cr.status = 'active'
    RETURNING 1
), credited AS (
    UPDATE customer_balances AS b
    SET store_credit_balance_minor = b.store_credit_balance_minor + v.amount
    FROM unnest($22::uuid[], $23::uuid[], $24::int8[]) AS v(merchant_id, customer_id, amount)
    WHERE b.merchant_id = v.merchant_id AND b.customer_id = v.customer_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM reverted) AS reverted,
       (SELECT count(*) FROM credited) AS credited
"""

DISCOUNT_CODE_CONSTRAINT = "uq_customer_rewards_merchant_id_discount_code"


async def load_reward_context(
    connection: asyncpg.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
) -> redemptions.RewardContext:
    """The rewards redeemed, the customers' redemption counts, the rewards to revert (locked)."""
    context = redemptions.RewardContext()
    wanted = redemptions.reward_keys(movements)
    if wanted:
        for row in await connection.fetch(_REWARDS, *_columns(wanted, 2)):
            context.rewards[(row["merchant_id"], row["id"])] = redemptions.CatalogueReward(**row)
        counted = redemptions.counted_keys(movements, customers, context)
        if counted:
            for row in await connection.fetch(_REDEEMED, *_columns(counted, 3)):
                key = (row["merchant_id"], row["customer_id"], row["reward_id"])
                context.redeemed[key] = row["redeemed"]
    held = redemptions.held_keys(movements)
    if held:
        for row in await connection.fetch(_HELD, *_columns(held, 2)):
            context.held[(row["merchant_id"], row["id"])] = dict(row)
    return context


async def apply_rewards(
    connection: asyncpg.Connection, writes: redemptions.RewardWrites, now: datetime
) -> None:
    # created_at and updated_at are the batch's time ($1).
    columns = redemptions.CUSTOMER_REWARD_COLUMNS[:-2]
    inserts = _columns([[r[c] for c in columns] for r in writes.inserts], len(columns))
    reverts = _columns(writes.reverts, 3)
    credits = _columns([(m, c, amount) for (m, c), amount in writes.store_credit.items()], 3)
    row = await connection.fetchrow(_APPLY_REWARDS, now, *inserts, *reverts, *credits)
    assert row is not None
    invariant(row["inserted"] == len(writes.inserts), "every redemption has its customer reward")
    invariant(row["reverted"] == len(writes.reverts), "every revert finds its active reward")
    invariant(row["credited"] == len(writes.store_credit), "every store credit reaches a balance")


# Lots, pending credits and tiers are only ever changed by the writer under
# their customer's balance lock, which the batch already holds: no further lock.
_LOTS = """
SELECT l.merchant_id, l.customer_id, l.id, l.remaining_minor, l.expires_at, l.created_at
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, customer_id)
JOIN point_lots l ON l.merchant_id = t.merchant_id AND l.customer_id = t.customer_id
"""

_PENDING_BY_ID = """
SELECT p.*
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, id)
JOIN pending_credits p ON p.merchant_id = t.merchant_id AND p.id = t.id
"""

_PENDING_BY_CUSTOMER = """
SELECT p.*
FROM unnest($1::uuid[], $2::uuid[]) AS t(merchant_id, customer_id)
JOIN pending_credits p ON p.merchant_id = t.merchant_id AND p.customer_id = t.customer_id
 AND p.status = 'pending'
"""

_TIERS = """
SELECT merchant_id, id, name, threshold_minor, retention_days, multiplier_hundredths
FROM tiers WHERE merchant_id = ANY($1::uuid[])
ORDER BY merchant_id, threshold_minor
"""

# The basis inside a rolling window: lifetime points earned in the last N days.
_WINDOWS = """
SELECT t.merchant_id, t.customer_id, coalesce(sum(e.lifetime_delta_minor), 0)::int8 AS total,
       min(e.created_at) AS oldest_at
FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) AS t(merchant_id, customer_id, days)
LEFT JOIN ledger_entries e ON e.merchant_id = t.merchant_id AND e.customer_id = t.customer_id
 AND e.created_at > $4::timestamptz - make_interval(days => t.days)
 AND e.lifetime_delta_minor <> 0
GROUP BY t.merchant_id, t.customer_id
"""

# The basis inside a rolling window: money spent (net of refunds) on orders placed in it.
_SPEND_WINDOWS = """
SELECT t.merchant_id, t.customer_id,
       coalesce(sum(o.total_minor - o.refunded_minor), 0)::int8 AS total,
       min(o.placed_at) AS oldest_at
FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) AS t(merchant_id, customer_id, days)
LEFT JOIN orders o ON o.merchant_id = t.merchant_id AND o.customer_id = t.customer_id
 AND o.placed_at > $4::timestamptz - make_interval(days => t.days)
 AND o.total_minor > o.refunded_minor
GROUP BY t.merchant_id, t.customer_id
"""

_APPLY_LIFECYCLE = """
WITH new_lots AS (
    INSERT INTO point_lots (merchant_id, id, customer_id, remaining_minor, expires_at, created_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::timestamptz[],
                         $6::timestamptz[])
    RETURNING 1
), spent_lots AS (
    UPDATE point_lots AS l SET remaining_minor = v.remaining
    FROM unnest($7::uuid[], $8::uuid[], $9::int8[]) AS v(merchant_id, id, remaining)
    WHERE l.merchant_id = v.merchant_id AND l.id = v.id
    RETURNING 1
), closed_lots AS (
    DELETE FROM point_lots AS l
    USING unnest($10::uuid[], $11::uuid[]) AS v(merchant_id, id)
    WHERE l.merchant_id = v.merchant_id AND l.id = v.id
    RETURNING 1
), new_pending AS (
    INSERT INTO pending_credits
        (merchant_id, id, customer_id, points_minor, kind, description, internal_note,
         visible_to_customer, apply_to_lifetime, expires_at, status, available_at,
         transaction_id, earn_rule_id, released_at, cancelled_at, created_at)
    SELECT * FROM unnest($12::uuid[], $13::uuid[], $14::uuid[], $15::int8[], $16::text[],
                         $17::text[], $18::text[], $19::bool[], $20::bool[],
                         $21::timestamptz[], $22::text[], $23::timestamptz[], $24::uuid[],
                         $25::uuid[], $26::timestamptz[], $27::timestamptz[], $28::timestamptz[])
    RETURNING 1
), finished_pending AS (
    UPDATE pending_credits AS p
    SET status = v.status, transaction_id = v.transaction_id,
        released_at = CASE WHEN v.status = 'released' THEN v.at END,
        cancelled_at = CASE WHEN v.status = 'cancelled' THEN v.at END
    FROM unnest($29::uuid[], $30::uuid[], $31::text[], $32::uuid[], $33::timestamptz[])
        AS v(merchant_id, id, status, transaction_id, at)
    WHERE p.merchant_id = v.merchant_id AND p.id = v.id AND p.status = 'pending'
    RETURNING 1
), shrunk_pending AS (
    UPDATE pending_credits AS p SET points_minor = v.points
    FROM unnest($34::uuid[], $35::uuid[], $36::int8[]) AS v(merchant_id, id, points)
    WHERE p.merchant_id = v.merchant_id AND p.id = v.id AND p.status = 'pending'
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_lots) AS new_lots,
       (SELECT count(*) FROM shrunk_pending) AS shrunk_pending,
       (SELECT count(*) FROM spent_lots) AS spent_lots,
       (SELECT count(*) FROM closed_lots) AS closed_lots,
       (SELECT count(*) FROM new_pending) AS new_pending,
       (SELECT count(*) FROM finished_pending) AS finished_pending
"""


async def load_lifecycle_context(
    connection: asyncpg.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
    now: datetime,
    also_pending: list[tuple[Any, Any]] | None = None,
) -> lifecycle.LifecycleContext:
    context = lifecycle.LifecycleContext()
    locked = list({(c.merchant_id, c.customer_id): c for c in customers.values()}.values())
    owners = lifecycle.lot_owners(locked)
    if owners:
        for row in await connection.fetch(_LOTS, *_columns(owners, 2)):
            lot = lifecycle.Lot(
                row["id"], row["remaining_minor"], row["expires_at"], row["created_at"],
                stored_remaining_minor=row["remaining_minor"],
            )  # fmt: skip
            context.lots.setdefault((row["merchant_id"], row["customer_id"]), []).append(lot)
    named = lifecycle.pending_ids(movements, also_pending)
    if named:
        for row in await connection.fetch(_PENDING_BY_ID, *_columns(named, 2)):
            context.pending[(row["merchant_id"], row["id"])] = dict(row)
    holders = lifecycle.pending_owners(movements, locked)
    if holders:
        for row in await connection.fetch(_PENDING_BY_CUSTOMER, *_columns(holders, 2)):
            context.pending[(row["merchant_id"], row["id"])] = dict(row)
    merchants = lifecycle.tier_merchants(locked)
    if merchants:
        for row in await connection.fetch(_TIERS, merchants):
            tier = lifecycle.Tier(
                row["id"], row["name"], row["threshold_minor"], row["retention_days"],
                row["multiplier_hundredths"],
            )  # fmt: skip
            context.tiers.setdefault(row["merchant_id"], []).append(tier)
        for basis, sql in (("lifetime_points", _WINDOWS), ("amount_spent", _SPEND_WINDOWS)):
            windowed = lifecycle.window_owners(locked, basis)
            if windowed:
                for row in await connection.fetch(sql, *_columns(windowed, 3), now):
                    context.windows[(row["merchant_id"], row["customer_id"])] = lifecycle.Window(
                        row["total"], row["oldest_at"]
                    )
    return context


async def apply_lifecycle(
    connection: asyncpg.Connection, writes: lifecycle.LifecycleWrites
) -> None:
    lots = _columns([[r[c] for c in lifecycle.LOT_COLUMNS] for r in writes.lot_inserts], 6)
    pending_columns = lifecycle.PENDING_COLUMNS
    pending = _columns(
        [[r[c] for c in pending_columns] for r in writes.pending_inserts], len(pending_columns)
    )
    row = await connection.fetchrow(
        _APPLY_LIFECYCLE,
        *lots,
        *_columns(writes.lot_updates, 3),
        *_columns(writes.lot_deletes, 2),
        *pending,
        *_columns(writes.pending_updates, 5),
        *_columns(writes.pending_shrinks, 3),
    )
    assert row is not None
    invariant(row["new_lots"] == len(writes.lot_inserts), "every new lot is stored")
    invariant(row["spent_lots"] == len(writes.lot_updates), "every spent lot exists")
    invariant(row["closed_lots"] == len(writes.lot_deletes), "every closed lot exists")
    invariant(row["new_pending"] == len(writes.pending_inserts), "every hold is stored")
    invariant(
        row["finished_pending"] == len(writes.pending_updates),
        "every released or cancelled credit was pending",
    )
    invariant(row["shrunk_pending"] == len(writes.pending_shrinks), "every shrunk hold is pending")


_ORDERS = """
SELECT o.*
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, order_id)
JOIN orders o ON o.merchant_id = t.merchant_id AND o.order_id = t.order_id
"""

_ORDER_RULES = """
SELECT merchant_id, type, id, points_minor, active, points_per_currency_unit_minor, rounding,
       min_order_total_minor, pending_days, referee_points_minor, max_per_customer
FROM earn_rules WHERE type IN ('purchase', 'referral') AND merchant_id = ANY($1::uuid[])
"""

_CODES = """
SELECT cr.*
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, code)
JOIN customer_rewards cr ON cr.merchant_id = t.merchant_id AND cr.discount_code = t.code
ORDER BY cr.merchant_id, cr.id
FOR UPDATE OF cr
"""

_APPLY_ORDERS = """
WITH new_orders AS (
    INSERT INTO orders
        (merchant_id, id, order_id, customer_id, total_minor, currency, discount_codes,
         fingerprint, status, refunded_minor, points_earned_minor, points_removed_minor,
         pending_id, transaction_id, earn_rule_id, not_earned_reason, placed_at, created_at,
         updated_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int8[], $6::text[],
                         $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                         $12::int8[], $13::uuid[], $14::uuid[], $15::uuid[], $16::text[],
                         $17::timestamptz[], $18::timestamptz[], $19::timestamptz[])
    RETURNING 1
), changed_orders AS (
    UPDATE orders AS o
    SET status = v.status, refunded_minor = v.refunded, points_removed_minor = v.removed,
        updated_at = v.updated_at
    FROM unnest($20::uuid[], $21::uuid[], $22::text[], $23::int8[], $24::int8[],
                $25::timestamptz[]) AS v(merchant_id, id, status, refunded, removed, updated_at)
    WHERE o.merchant_id = v.merchant_id AND o.id = v.id
    RETURNING 1
), new_refunds AS (
    INSERT INTO order_refunds
        (merchant_id, id, order_row_id, amount_minor, points_removed_minor,
         points_cancelled_minor, shortfall_minor, transaction_id, created_at)
    SELECT * FROM unnest($26::uuid[], $27::uuid[], $28::uuid[], $29::int8[], $30::int8[],
                         $31::int8[], $32::int8[], $33::uuid[], $34::timestamptz[])
    RETURNING 1
), customers_changed AS (
    -- One update per customer: a statement may change a row only once.
    UPDATE customers AS c
    SET total_spent_minor = c.total_spent_minor + v.spent,
        referral_completed_at = CASE WHEN v.referee THEN $38 ELSE c.referral_completed_at END,
        referred_completed = c.referred_completed + v.referred
    FROM unnest($35::uuid[], $36::uuid[], $37::int8[], $42::bool[], $43::int4[])
        AS v(merchant_id, customer_id, spent, referee, referred)
    WHERE c.merchant_id = v.merchant_id AND c.id = v.customer_id
      AND (NOT v.referee OR c.referral_completed_at IS NULL)
    RETURNING 1
), used AS (
    UPDATE customer_rewards AS cr
    SET status = 'used', used_at = $38, order_id = v.order_id, updated_at = $38
    FROM unnest($39::uuid[], $40::uuid[], $41::text[]) AS v(merchant_id, id, order_id)
    WHERE cr.merchant_id = v.merchant_id AND cr.id = v.id AND cr.status = 'active'
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_orders) AS new_orders,
       (SELECT count(*) FROM changed_orders) AS changed_orders,
       (SELECT count(*) FROM new_refunds) AS new_refunds,
       (SELECT count(*) FROM customers_changed) AS customers_changed,
       (SELECT count(*) FROM used) AS used
"""

ORDER_CONSTRAINT = "uq_orders_merchant_id_order_id"

_ACTION_RULES = """
SELECT r.merchant_id, r.type, r.id, r.points_minor, r.active, r.max_per_customer, r.period_days
FROM unnest($1::uuid[], $2::text[]) AS t(merchant_id, type)
JOIN earn_rules r ON r.merchant_id = t.merchant_id AND r.type = t.type
"""

_ACTION_COUNTS = """
SELECT t.merchant_id, t.customer_id, t.action, count(a.id) AS rewarded
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])
    AS t(merchant_id, customer_id, action, since)
JOIN customer_actions a ON a.merchant_id = t.merchant_id AND a.customer_id = t.customer_id
 AND a.action = t.action AND (t.since IS NULL OR a.created_at >= t.since)
GROUP BY t.merchant_id, t.customer_id, t.action
"""

_APPLY_ACTIONS = """
WITH new_actions AS (
    INSERT INTO customer_actions
        (merchant_id, id, customer_id, action, earn_rule_id, points_minor, transaction_id,
         created_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::uuid[],
                         $6::int8[], $7::uuid[], $8::timestamptz[])
    RETURNING 1
), flags AS (
    UPDATE customers AS c SET rewarded_actions = v.actions
    FROM unnest($9::uuid[], $10::uuid[], $11::text[]) AS v(merchant_id, id, actions)
    WHERE c.merchant_id = v.merchant_id AND c.id = v.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_actions) AS new_actions, (SELECT count(*) FROM flags) AS flags
"""


async def load_action_context(
    connection: asyncpg.Connection,
    movements: list[Movement],
    customers: dict[CustomerKey, LockedCustomer],
    now: datetime,
) -> actions.ActionContext:
    context = actions.ActionContext()
    keys = actions.action_keys(movements)
    for row in await connection.fetch(_ACTION_RULES, *_columns(keys, 2)):
        context.rules[(row["merchant_id"], row["type"])] = actions.ActionRule(
            row["id"], row["points_minor"], row["active"], row["max_per_customer"],
            row["period_days"],
        )  # fmt: skip
    counted = actions.count_keys(movements, customers, context, now)
    if counted:
        for row in await connection.fetch(_ACTION_COUNTS, *_columns(counted, 4)):
            key = (row["merchant_id"], row["customer_id"], row["action"])
            context.counts[key] = row["rewarded"]
    return context


async def apply_actions(connection: asyncpg.Connection, writes: actions.ActionWrites) -> None:
    inserts = _columns(
        [[r[c] for c in actions.ACTION_COLUMNS] for r in writes.inserts],
        len(actions.ACTION_COLUMNS),
    )
    flags = _columns([(m, c, text) for (m, c), text in writes.rewarded.items()], 3)
    row = await connection.fetchrow(_APPLY_ACTIONS, *inserts, *flags)
    assert row is not None
    invariant(row["new_actions"] == len(writes.inserts), "every rewarded action is stored")
    invariant(row["flags"] == len(writes.rewarded), "every customer's flags are stored")


async def load_order_context(
    connection: asyncpg.Connection, movements: list[Movement]
) -> orders.OrderContext:
    context = orders.OrderContext()
    keys = orders.order_keys(movements)
    if keys:
        for row in await connection.fetch(_ORDERS, *_columns(keys, 2)):
            context.orders[(row["merchant_id"], row["order_id"])] = dict(row)
    merchants = orders.rule_merchants(movements)
    if merchants:
        for row in await connection.fetch(_ORDER_RULES, merchants):
            orders.add_rule(context, dict(row))
    codes = orders.code_keys(movements)
    if codes:
        for row in await connection.fetch(_CODES, *_columns(codes, 2)):
            context.codes[(row["merchant_id"], row["discount_code"])] = dict(row)
    return context


async def apply_orders(
    connection: asyncpg.Connection, writes: orders.OrderWrites, now: datetime
) -> None:
    inserts = _columns(
        [[r[c] for c in orders.ORDER_COLUMNS] for r in writes.inserts], len(orders.ORDER_COLUMNS)
    )
    changed = _columns(
        [
            (r["merchant_id"], r["id"], r["status"], r["refunded_minor"],
             r["points_removed_minor"], r["updated_at"])
            for r in writes.updates
        ],
        6,
    )  # fmt: skip
    refunds = _columns(
        [[r[c] for c in orders.REFUND_COLUMNS] for r in writes.refunds], len(orders.REFUND_COLUMNS)
    )
    changes = orders.customer_changes(writes)
    people = _columns([(m, c, spent) for m, c, spent, _, _ in changes], 3)
    flags = _columns([(referee, referred) for _, _, _, referee, referred in changes], 2)
    used = _columns(writes.rewards_used, 3)
    row = await connection.fetchrow(
        _APPLY_ORDERS, *inserts, *changed, *refunds, *people, now, *used, *flags
    )
    assert row is not None
    invariant(row["new_orders"] == len(writes.inserts), "every new order is stored")
    invariant(row["changed_orders"] == len(writes.updates), "every changed order exists")
    invariant(row["new_refunds"] == len(writes.refunds), "every refund is stored")
    invariant(
        row["customers_changed"] == len(changes),
        "every customer change lands (a referral completes once)",
    )
    invariant(row["used"] == len(writes.rewards_used), "every used code was active")


def is_transient(error: BaseException) -> bool:
    if isinstance(error, asyncpg.exceptions.UniqueViolationError):
        # A new discount code met an existing one: the batch is planned again with new codes.
        # (or an order met the same order_id posted for another customer: planned again,
        # it answers order_conflict).
        return error.constraint_name in (DISCOUNT_CODE_CONSTRAINT, ORDER_CONSTRAINT)
    return isinstance(
        error, asyncpg.exceptions.DeadlockDetectedError | asyncpg.exceptions.SerializationError
    )


def is_unavailable(error: BaseException) -> bool:
    return database_unavailable(error)
