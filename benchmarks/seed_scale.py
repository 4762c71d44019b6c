"""Seed one merchant at scale on Postgres: customers, their ledger, balances and rollups.

    python -m benchmarks.seed_scale [--database-url URL] [--customers 1000000]
                                    [--entries 10000000] [--replace] [--no-verify]

The database named by ``--database-url`` (default
``postgresql://postgres@127.0.0.1:5432/loyalty_bench_scale``) is created
(through the server's ``postgres`` database), migrated to head, and given one
merchant (``merchants.service.create_merchant``: its programme settings too)
with, all by set-based SQL (``INSERT … SELECT … generate_series``), nothing
through the API:

- ``--customers`` customers enrolled over the last two years (ids UUIDv7 of
  that time): first names from ~190, last names from ~1000 (skewed, so some
  are common and the last ones rare), emails ``first.lastN@example.com``,
  platform ids ``7000000000000 + N``, 97% active;
- ``--entries`` ledger entries spread over them (8% have none, a few have
  hundreds or more), each customer's numbered 1..k and dated over the last
  365 days (after its enrolment) in sequence order. They come in groups of
  four: an ``earn``; an ``earn`` or a ``revert`` of the previous group's
  ``redeem``; an ``earn`` or an ``adjustment`` credit; then a debit
  (``redeem``, ``expire``, ``refund`` or an ``adjustment``) of at most the
  group's own credits (a refund at most its first, earned, credit), so no
  balance and no lifetime total ever goes below zero. ``balance_after_minor``
  is the running sum, ``lifetime_delta_minor`` the points of the entries that
  count for lifetime (earn, refund, adjustment credits); ``actor`` is
  ``system`` for expiries, a staff user for adjustments, ``api_key:bench``
  otherwise;
- a pending credit (an order's return window) for one customer in fifty;
- ``customer_balances`` summed from the entries and the pending credits;
- ``daily_rollups`` from all of them in one grouped ``INSERT … SELECT``
  (``entry:<kind>``, ``members``, ``pending``, spread over the writers'
  ``ROLLUP_SHARDS`` shard rows as live writes are).

Secondary indexes, unique and foreign keys of the loaded tables (and the
ledger's primary key, whose ids arrive out of order) are dropped before the
load and created again after it from their own catalogue definitions (checked
identical), then the tables are ``VACUUM ANALYZE``d. The session runs with
``synchronous_commit = off``, a large ``maintenance_work_mem`` and no
parallel workers (one core; ``--parallel N`` for index builds). Each step's
time is printed; the load is verified (balances against the entries, the last
entry's ``balance_after``, rollups against the entries) unless ``--no-verify``.

The database is kept: a comment on it records what was seeded, and a later
run (or ``benchmarks.admin_pages``) with the same sizes reuses it. A database
of that name seeded otherwise is refused unless ``--replace``; one whose seed
fails is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.customers_list import FIRST_NAMES, LAST_NAMES
from loyalty.db.engine import Database, driver_url
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.ledger.engine.changes import (
    ENTRY_METRIC_PREFIX,
    MEMBERS_METRIC,
    PENDING_METRIC,
    ROLLUP_SHARDS,
)
from loyalty.merchants import service as merchants_service
from loyalty.settings import Settings

DEFAULT_DATABASE_URL = os.environ.get(
    "LOYALTY_BENCH_SCALE_URL", "postgresql://postgres@127.0.0.1:5432/loyalty_bench_scale"
)
MARKER = "loyalty benchmarks.seed_scale: "
MERCHANT_NAME = "Scale benchmark shop"
ADJUSTING_USER = "user:owner@example.com"
API_KEY_ACTOR = "api_key:bench"
ENROLMENT_DAYS = 730
LEDGER_DAYS = 365
PENDING_DAYS = 14
PENDING_EVERY = 50  # one customer in fifty has a pending credit
PLATFORM_ID_BASE = 7_000_000_000_000
LOADED_TABLES = ("customers", "customer_balances", "ledger_entries", "pending_credits")
ROLLUP_TABLE = "daily_rollups"

# Common names first: the generator picks early names more often.
_COMMON_FIRST = """
James Mary Michael Patricia John Jennifer Robert Linda David Elizabeth William Barbara
Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy
Matthew Sandra Anthony Emily Mark Ashley Olivia Emma Noah Liam Sophia Ava
"""
_COMMON_LAST = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
"""
# English-looking surnames (Ashford, Blackwood…) after the common and listed ones: the
# tail of the distribution, where a few are rare.
_SURNAME_STEMS = """
Ash Black Bram Brad Brook Burn Cald Carl Chad Chester Church Clay Craw Dal Dun East Elm
Fair Fern Good Green Hal Hart Hay Heath Hol Kings Lang Lock Mar Middle Mill Moor Nor Oak
Pen Ray Red Ross Rush Sand Shel South Stan Stock Thorn Went West Whit Wood
"""
_SURNAME_ENDINGS = "bury by croft dale field ford ham hurst ley more stead ton well wick worth"


def _ordered(common: str, *more: list[str]) -> list[str]:
    names: list[str] = []
    for name in [*common.split(), *(name for group in more for name in group)]:
        if name not in names:
            names.append(name)
    return names


BY_FREQUENCY_FIRST = _ordered(_COMMON_FIRST, FIRST_NAMES)
BY_FREQUENCY_LAST = _ordered(
    _COMMON_LAST,
    LAST_NAMES,
    [stem + ending for stem in _SURNAME_STEMS.split() for ending in _SURNAME_ENDINGS.split()],
)

# --- generated values ---------------------------------------------------------------
# Every "random" value is a hash of the row's numbers: the same data on every run.

_SEED_CUSTOMER = 11
_SEED_GROUP = 12
_SEED_TIME = 13
_SEED_PENDING = 14


def _uniform(key: str, seed: int) -> str:
    """SQL: a float in (0, 1], a hash of the integer ``key``."""
    return (
        f"(((hashint8extended(({key})::int8, {seed}) & 9007199254740991) + 1)::float8"
        " / 9007199254740992::float8)"
    )


def _customer_u(slot: int) -> str:
    return _uniform(f"n::int8 * 100 + {slot}", _SEED_CUSTOMER)


def _group_u(group: str, slot: int) -> str:
    """A value of the customer's entry group ``group`` (0-based; four entries each)."""
    return _uniform(f"c.n::int8 * 10000000 + ({group}) * 10 + {slot}", _SEED_GROUP)


def _uuid7(epoch_seconds: str, random_hex: str) -> str:
    """SQL: a UUIDv7 of that time (milliseconds) with bits from 32 hex digits."""
    return (
        f"(lpad(to_hex(floor(({epoch_seconds}) * 1000)::int8), 12, '0') || '7' "
        f"|| substr({random_hex}, 1, 3) || '8' || substr({random_hex}, 4, 15))::uuid"
    )


def _first_credit(group: str) -> str:  # earned, 10..500 points
    return f"(100 * (10 + floor(490 * {_group_u(group, 1)})::int8))"


def _second_credit(group: str) -> str:  # earned, 10..300 points
    return f"(100 * (10 + floor(290 * {_group_u(group, 6)})::int8))"


def _third_credit(group: str) -> str:  # earned or an adjustment, 5..200 points
    return f"(100 * (5 + floor(195 * {_group_u(group, 3)})::int8))"


def _debit_kind(group: str) -> str:
    return (
        "(ARRAY['redeem', 'expire', 'refund', 'adjustment'])"
        f"[1 + width_bucket({_group_u(group, 4)}, ARRAY[0.55, 0.70, 0.80]::float8[])]"
    )


def _debit(group: str) -> str:
    """The group's debit (positive): 30-95% of its first and third credits (of
    its first, earned, credit only for a refund), in whole points."""
    share = f"(0.30 + 0.65 * {_group_u(group, 5)})"
    base = (
        f"(CASE WHEN {_debit_kind(group)} = 'refund' THEN {_first_credit(group)} "
        f"ELSE {_first_credit(group)} + {_third_credit(group)} END)"
    )
    return f"(floor({share} * {base} / 100)::int8 * 100)"


def _names_sql(table: str) -> list[str]:
    """A temporary table of names numbered from 0 ($1: the names, in order)."""
    return [
        f"CREATE TEMP TABLE {table} (i int PRIMARY KEY, name text NOT NULL)",
        f"INSERT INTO {table} SELECT i - 1, name "
        "FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)",
    ]


# Customer n (1..N): enrolment time (increasing with n), names, status and k, its
# number of entries: weights (0 for 8%, else heavy-tailed), the entries shared out in
# proportion by the cumulative weight, so the k add up to exactly M.
# $1 N, $2 M, $3 now, $4 first names, $5 last names.
_CUSTOMERS_SQL = f"""
CREATE TEMP TABLE bench_customers AS
SELECT n, {_uuid7("extract(epoch FROM created_at)", "md5('c' || n)")} AS id,
       created_at, first_i, last_i, status, k,
       extract(epoch FROM start_at) AS start_epoch,
       extract(epoch FROM ($3::timestamptz - start_at)) * 0.99 AS span
FROM (
    SELECT n, created_at, first_i, last_i, status,
           greatest(created_at, $3::timestamptz - interval '{LEDGER_DAYS} days') AS start_at,
           (div($2::int8 * cum, total) - div($2::int8 * (cum - w), total))::int AS k
    FROM (
        SELECT *, sum(w) OVER (ORDER BY n ROWS UNBOUNDED PRECEDING) AS cum,
               sum(w) OVER () AS total
        FROM (
            SELECT n,
                   $3::timestamptz - make_interval(
                       secs => {ENROLMENT_DAYS} * 86400.0 * (($1 - n) + {_customer_u(1)}) / $1
                   ) AS created_at,
                   least(cardinality($4::text[]) - 1,
                         floor(cardinality($4::text[]) * power({_customer_u(2)}, 1.6)))::int
                       AS first_i,
                   -- Zipf-like, offset: P(i) ~ (i + 10)^-1.5 (inverse of its CDF)
                   least(cardinality($5::text[]) - 1, floor(
                       power(power(10, -0.5) - {_customer_u(3)}
                             * (power(10, -0.5) - power(cardinality($5::text[]) + 10, -0.5)),
                             -2) - 10))::int AS last_i,
                   (ARRAY['active', 'inactive', 'excluded'])
                       [1 + width_bucket({_customer_u(4)}, ARRAY[0.97, 0.99]::float8[])]
                       AS status,
                   CASE WHEN {_customer_u(5)} <= 0.08 THEN 0
                        ELSE least(200000, floor(1000 / sqrt({_customer_u(6)})))::int8 END
                       AS w
            FROM generate_series(1, $1) AS n
        ) AS drawn
    ) AS weighed
) AS shared
"""

# Each customer's k entries, made per customer (LATERAL), so the running balance is a
# window over its own few rows and no sort of the whole ledger is needed.
# $1 merchant.
_ENTRIES_SQL = f"""
INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind,
    description, internal_note, visible_to_customer, apply_to_lifetime,
    lifetime_delta_minor, balance_after_minor, expires_at, earn_rule_id, created_at, actor)
SELECT $1, {_uuid7("e.epoch", "md5((c.n::int8 * 10000000 + e.s)::text)")}, c.id, e.s,
       e.points, e.kind,
       CASE e.kind WHEN 'earn' THEN 'Points for order #' || (100000 + c.n * 16 + e.s % 16)
                   WHEN 'redeem' THEN 'Reward redeemed'
                   WHEN 'revert' THEN 'Reward refunded'
                   WHEN 'expire' THEN 'Points expired'
                   WHEN 'refund' THEN 'Order refunded'
                   ELSE 'Points adjustment' END,
       NULL, true, e.lifetime, CASE WHEN e.lifetime THEN e.points ELSE 0 END,
       e.balance_after, NULL, NULL, to_timestamp(e.epoch),
       CASE e.kind WHEN 'expire' THEN 'system' WHEN 'adjustment' THEN '{ADJUSTING_USER}'
                   ELSE '{API_KEY_ACTOR}' END
FROM bench_customers AS c
CROSS JOIN LATERAL (
    SELECT s, kind, points, epoch,
           kind IN ('earn', 'refund') OR (kind = 'adjustment' AND points > 0) AS lifetime,
           sum(points) OVER (ORDER BY s ROWS UNBOUNDED PRECEDING) AS balance_after
    FROM (
        SELECT s, epoch,
               CASE r WHEN 0 THEN 'earn'
                      WHEN 1 THEN CASE WHEN reverts THEN 'revert' ELSE 'earn' END
                      WHEN 2 THEN CASE WHEN {_group_u("j", 7)} <= 0.75 THEN 'earn'
                                       ELSE 'adjustment' END
                      ELSE {_debit_kind("j")} END AS kind,
               CASE r WHEN 0 THEN {_first_credit("j")}
                      WHEN 1 THEN CASE WHEN reverts THEN {_debit("j - 1")}
                                       ELSE {_second_credit("j")} END
                      WHEN 2 THEN {_third_credit("j")}
                      ELSE -{_debit("j")} END AS points
        FROM (
            SELECT s, j, r,
                   -- a refund of the previous group's redemption, one time in five
                   r = 1 AND j > 0 AND {_debit_kind("j - 1")} = 'redeem'
                       AND {_group_u("j", 2)} <= 0.2 AS reverts,
                   c.start_epoch + c.span
                       * ((s - 1) + 0.05
                          + 0.9 * {_uniform("c.n::int8 * 10000000 + s", _SEED_TIME)}) / c.k
                       AS epoch
            FROM (SELECT s, (s - 1) / 4 AS j, (s - 1) % 4 AS r
                  FROM generate_series(1, c.k) AS s) AS numbered
        ) AS placed
    ) AS moved
) AS e
WHERE c.k > 0
"""

_TOTALS_SQL = """
CREATE TEMP TABLE bench_totals AS
SELECT customer_id,
       sum(points_minor) AS balance,
       sum(lifetime_delta_minor) AS lifetime,
       sum(CASE WHEN kind IN ('redeem', 'revert') THEN -points_minor ELSE 0 END) AS spent,
       sum(CASE WHEN kind = 'expire' THEN -points_minor ELSE 0 END) AS expired,
       sum(CASE WHEN kind = 'earn' THEN points_minor ELSE 0 END) AS earned,
       max(sequence) AS last_sequence,
       max(created_at) FILTER (WHERE points_minor > 0 OR kind = 'redeem') AS last_activity_at,
       max(created_at) AS last_at
FROM ledger_entries WHERE merchant_id = $1
GROUP BY customer_id
"""

# $1 merchant. Money spent: one point per currency unit earned.
_CUSTOMER_ROWS_SQL = f"""
INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
    first_name_search, last_name_search, date_of_birth, status, total_spent_minor,
    created_at, updated_at)
SELECT $1, c.id, ({PLATFORM_ID_BASE} + c.n)::text,
       lower(f.name) || '.' || lower(l.name) || c.n || '@example.com',
       f.name, l.name, lower(f.name), lower(l.name),
       CASE WHEN {_customer_u(7)} <= 0.4
            THEN date '1950-01-01' + floor(20000 * {_customer_u(8)})::int END,
       c.status, coalesce(t.earned, 0), c.created_at, greatest(c.created_at, t.last_at)
FROM bench_customers AS c
JOIN bench_first AS f ON f.i = c.first_i
JOIN bench_last AS l ON l.i = c.last_i
LEFT JOIN bench_totals AS t ON t.customer_id = c.id
ORDER BY c.n
"""

# $1 merchant.
_PENDING_SQL = f"""
INSERT INTO pending_credits (merchant_id, id, customer_id, points_minor,
    points_cancelled_minor, kind, description, internal_note, visible_to_customer,
    apply_to_lifetime, expires_at, status, available_at, transaction_id, earn_rule_id,
    released_at, cancelled_at, created_at)
SELECT $1, {_uuid7("extract(epoch FROM p.at)", "md5('p' || c.n)")}, c.id,
       100 * (10 + floor(290 * {_uniform("c.n", _SEED_PENDING)})::int8), 0, 'earn',
       'Points for order #' || (900000 + c.n), NULL, true, true, NULL, 'pending',
       p.at + interval '{PENDING_DAYS} days', NULL, NULL, NULL, NULL, p.at
FROM bench_customers AS c
CROSS JOIN LATERAL (
    SELECT greatest(c.created_at, $2::timestamptz - make_interval(
        secs => {PENDING_DAYS} * 86400.0 * {_uniform("-c.n", _SEED_PENDING)})) AS at
) AS p
WHERE c.n % {PENDING_EVERY} = 0
"""

_BALANCES_SQL = """
INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
    pending_points_minor, lifetime_points_minor, points_spent_minor, points_expired_minor,
    last_sequence, last_activity_at, updated_at)
SELECT $1, c.id, coalesce(t.balance, 0), coalesce(p.pending, 0), coalesce(t.lifetime, 0),
       coalesce(t.spent, 0), coalesce(t.expired, 0), coalesce(t.last_sequence, 0),
       greatest(t.last_activity_at, p.at), greatest(c.created_at, t.last_at, p.at)
FROM bench_customers AS c
LEFT JOIN bench_totals AS t ON t.customer_id = c.id
LEFT JOIN (
    SELECT customer_id, sum(points_minor - points_cancelled_minor) AS pending,
           max(created_at) AS at
    FROM pending_credits WHERE merchant_id = $1 AND status = 'pending'
    GROUP BY customer_id
) AS p ON p.customer_id = c.id
ORDER BY c.n
"""


def _day(column: str) -> str:
    return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)"


def _shard(shards: int) -> str:
    """A row's shard: a random byte of its UUIDv7, as writers pick one at random."""
    return f"(get_byte(uuid_send(id), 15) % {shards})::int2"


def rollups_sql(shards: int) -> str:
    """$1 merchant: its rollups from its entries, customers and pending credits, as
    migration 0013's backfill and the live writers count them."""
    shard = _shard(shards)
    return f"""
INSERT INTO daily_rollups (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
SELECT $1, day, metric, shard, sum(plus), sum(minus), sum(counted)
FROM (
    SELECT {_day("created_at")} AS day, '{ENTRY_METRIC_PREFIX}' || kind AS metric,
           {shard} AS shard,
           CASE WHEN points_minor > 0 THEN points_minor ELSE 0 END AS plus,
           CASE WHEN points_minor < 0 THEN -points_minor ELSE 0 END AS minus, 1 AS counted
    FROM ledger_entries WHERE merchant_id = $1
    UNION ALL
    SELECT {_day("created_at")}, '{MEMBERS_METRIC}', {shard}, 1, 0, 1
    FROM customers WHERE merchant_id = $1
    UNION ALL
    SELECT {_day("updated_at")}, '{MEMBERS_METRIC}', {shard}, 0, 1, 1
    FROM customers WHERE merchant_id = $1 AND status = 'erased'
    UNION ALL
    SELECT {_day("created_at")}, '{PENDING_METRIC}', {shard},
           points_minor - points_cancelled_minor, 0, 1
    FROM pending_credits WHERE merchant_id = $1 AND status = 'pending'
) AS rows
GROUP BY day, metric, shard
"""


_VERIFY_SQL = {
    "balances differing from their entries": """
        SELECT count(*) FROM customer_balances AS b
        LEFT JOIN (SELECT customer_id, sum(points_minor) AS balance,
                          sum(lifetime_delta_minor) AS lifetime, max(sequence) AS last,
                          count(*) AS entries
                   FROM ledger_entries WHERE merchant_id = $1 GROUP BY customer_id) AS e
          ON e.customer_id = b.customer_id
        WHERE b.merchant_id = $1
          AND (b.points_balance_minor <> coalesce(e.balance, 0)
               OR b.lifetime_points_minor <> coalesce(e.lifetime, 0)
               OR b.last_sequence <> coalesce(e.last, 0)
               OR coalesce(e.entries, 0) <> coalesce(e.last, 0))""",
    "last entries whose balance_after is not the balance": """
        SELECT count(*) FROM ledger_entries AS e
        JOIN customer_balances AS b ON b.merchant_id = e.merchant_id
          AND b.customer_id = e.customer_id AND b.last_sequence = e.sequence
        WHERE e.merchant_id = $1 AND e.balance_after_minor <> b.points_balance_minor""",
    "rollup metrics differing from the rows they count": f"""
        SELECT count(*) FROM (
            SELECT metric, sum(plus_minor) AS plus, sum(minus_minor) AS minus,
                   sum(count) AS counted
            FROM daily_rollups WHERE merchant_id = $1 GROUP BY metric
        ) AS r FULL JOIN (
            SELECT '{ENTRY_METRIC_PREFIX}' || kind AS metric,
                   sum(greatest(points_minor, 0)) AS plus,
                   sum(greatest(-points_minor, 0)) AS minus, count(*) AS counted
            FROM ledger_entries WHERE merchant_id = $1 GROUP BY kind
            UNION ALL
            SELECT '{MEMBERS_METRIC}', count(*), count(*) FILTER (WHERE status = 'erased'),
                   count(*) + count(*) FILTER (WHERE status = 'erased')
            FROM customers WHERE merchant_id = $1
            UNION ALL
            SELECT '{PENDING_METRIC}', sum(points_minor - points_cancelled_minor), 0, count(*)
            FROM pending_credits WHERE merchant_id = $1 AND status = 'pending'
            HAVING count(*) > 0
        ) AS t ON t.metric = r.metric
        WHERE r.plus IS DISTINCT FROM t.plus OR r.minus IS DISTINCT FROM t.minus
           OR r.counted IS DISTINCT FROM t.counted""",
}


# --- the schema around the load -------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """An index or constraint of a loaded table, as the catalogue defines it."""

    table: str
    name: str
    kind: str  # 'p' primary key, 'u' unique, 'f' foreign key, 'i' plain index
    sql: str  # pg_get_constraintdef / pg_get_indexdef

    @property
    def create(self) -> str:
        if self.kind == "i":
            return self.sql
        return f"ALTER TABLE {_quote(self.table)} ADD CONSTRAINT {_quote(self.name)} {self.sql}"

    @property
    def drop(self) -> str:
        if self.kind == "i":
            return f"DROP INDEX {_quote(self.name)}"
        return f"ALTER TABLE {_quote(self.table)} DROP CONSTRAINT {_quote(self.name)}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_DEFINITIONS_SQL = """
SELECT t.relname AS "table", con.conname AS name, con.contype::text AS kind,
       pg_get_constraintdef(con.oid) AS sql,
       -- a key another table's foreign key needs (not one of the loaded tables)
       EXISTS (SELECT 1 FROM pg_constraint AS ref JOIN pg_class AS other
                 ON other.oid = ref.conrelid
               WHERE ref.contype = 'f' AND ref.confrelid = con.conrelid
                 AND ref.conindid = con.conindid AND NOT other.relname = ANY($1::text[]))
           AS referenced
FROM pg_constraint AS con JOIN pg_class AS t ON t.oid = con.conrelid
WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
  AND con.contype IN ('p', 'u', 'f')
UNION ALL
SELECT t.relname, i.relname, 'i', pg_get_indexdef(i.oid), false
FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS t ON t.oid = x.indrelid
WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS con
                  WHERE con.conindid = x.indexrelid AND con.conrelid = t.oid
                    AND con.contype IN ('p', 'u', 'x'))
"""

# Created again in this order (keys before the foreign keys that need them).
_CREATE_ORDER = {"p": 0, "u": 1, "i": 2, "f": 3}


async def definitions(connection: asyncpg.Connection, tables: tuple[str, ...]) -> list[Definition]:
    rows = await connection.fetch(_DEFINITIONS_SQL, list(tables))
    return sorted(
        (
            Definition(row["table"], row["name"], row["kind"], row["sql"])
            for row in rows
            if not row["referenced"]
        ),
        key=lambda d: (_CREATE_ORDER[d.kind], d.table, d.name),
    )


# --- seeding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedInfo:
    """What a database was seeded with (kept as a comment on it)."""

    merchant_id: str
    customers: int
    entries: int
    seeded_at: str
    seconds: float


@contextmanager
def step(label: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"  {label}…", end="", flush=True)
    yield
    print(f" {time.perf_counter() - started:.1f} s", flush=True)


def admin_url(database_url: str) -> tuple[str, str]:
    """The server's ``postgres`` database (to create or drop the target) and the
    target's name."""
    url = make_url(driver_url(database_url))
    name = url.database
    if not name:
        raise SystemExit(f"no database name in {database_url!r}")
    return url.set(database="postgres").render_as_string(hide_password=False), name


async def read_marker(database_url: str) -> SeedInfo | None:
    """What the database was seeded with; None if it does not exist or was not seeded."""
    server, name = admin_url(database_url)
    connection = await asyncpg.connect(server)
    try:
        row = await connection.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment "
            "FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await connection.close()
    if row is None or not (row["comment"] or "").startswith(MARKER):
        return None
    return SeedInfo(**json.loads(row["comment"][len(MARKER) :]))


async def database_exists(database_url: str) -> bool:
    server, name = admin_url(database_url)
    connection = await asyncpg.connect(server)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def drop_database(database_url: str) -> None:
    server, name = admin_url(database_url)
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        await connection.close()


async def _create_database(database_url: str) -> None:
    server, name = admin_url(database_url)
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"CREATE DATABASE {_quote(name)}")
    finally:
        await connection.close()


async def _create_merchant(database_url: str) -> uuid.UUID:
    database = Database(Settings(database_url=database_url), pool_size=1)

    async def work(connection: AsyncConnection) -> uuid.UUID:
        merchant = await merchants_service.create_merchant(connection, MERCHANT_NAME)
        return merchant.id

    try:
        return await database.transaction(work)
    finally:
        await database.dispose()


async def _session(connection: asyncpg.Connection, parallel: int) -> None:
    for setting in (
        "synchronous_commit = off",
        "maintenance_work_mem = '1GB'",
        "work_mem = '256MB'",
        "temp_buffers = '256MB'",
        f"max_parallel_maintenance_workers = {parallel}",
        "max_parallel_workers_per_gather = 0",
        "statement_timeout = 0",
        "jit = off",
    ):
        await connection.execute(f"SET {setting}")


async def seed(
    database_url: str,
    customers: int,
    entries: int,
    *,
    shards: int = ROLLUP_SHARDS,
    parallel: int = 0,
    verify: bool = True,
) -> SeedInfo:
    """Seed a fresh database (created, empty): see the module's note."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    print(f"seeding {customers:,} customers and {entries:,} entries into {database_url}")
    with step("migrating to head"):
        await upgrade_to_head_async(database_url)
    merchant_id = await _create_merchant(database_url)
    print(f"  merchant {merchant_id}")
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        await _session(connection, parallel)
        tables = (*LOADED_TABLES, ROLLUP_TABLE)
        dropped = await definitions(connection, tables)
        with step(f"dropping {len(dropped)} indexes and keys of {', '.join(tables)}"):
            for definition in sorted(dropped, key=lambda d: -_CREATE_ORDER[d.kind]):
                await connection.execute(definition.drop)
        with step("names"):
            for table, names in (
                ("bench_first", BY_FREQUENCY_FIRST),
                ("bench_last", BY_FREQUENCY_LAST),
            ):
                create, fill = _names_sql(table)
                await connection.execute(create)
                await connection.execute(fill, names)
        with step(f"{customers:,} customers drawn (temp table)"):
            await connection.execute(
                _CUSTOMERS_SQL, customers, entries, now, BY_FREQUENCY_FIRST, BY_FREQUENCY_LAST
            )
            await connection.execute("ANALYZE bench_customers")
        with step(f"{entries:,} ledger entries"):
            await connection.execute(_ENTRIES_SQL, merchant_id)
        with step("per-customer totals of the entries (temp table)"):
            await connection.execute(_TOTALS_SQL, merchant_id)
            await connection.execute("ANALYZE bench_totals")
        with step(f"{customers:,} customers"):
            await connection.execute(_CUSTOMER_ROWS_SQL, merchant_id)
        with step("pending credits"):
            await connection.execute(_PENDING_SQL, merchant_id, now)
        with step(f"{customers:,} balances"):
            await connection.execute(_BALANCES_SQL, merchant_id)
        with step("daily rollups"):
            await connection.execute(rollups_sql(shards), merchant_id)
        for definition in dropped:
            with step(f"creating {definition.table}.{definition.name}"):
                await connection.execute(definition.create)
        if await definitions(connection, tables) != dropped:
            raise RuntimeError("the indexes and keys created again differ from the dropped ones")
        for table in tables:
            with step(f"VACUUM ANALYZE {table}"):
                await connection.execute(f"VACUUM (ANALYZE) {table}")
        if verify:
            for label, sql in _VERIFY_SQL.items():
                with step(f"verifying: {label}"):
                    wrong = await connection.fetchval(sql, merchant_id)
                if wrong:
                    raise RuntimeError(f"seed inconsistent: {wrong} {label}")
        counts = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM customers) AS customers, "
            "(SELECT count(*) FROM ledger_entries) AS entries, "
            "(SELECT count(*) FROM daily_rollups) AS rollups, "
            "(SELECT count(*) FROM pending_credits) AS pending, "
            "pg_size_pretty(pg_database_size(current_database())) AS size"
        )
        assert counts is not None
        if (counts["customers"], counts["entries"]) != (customers, entries):
            raise RuntimeError(f"seeded {dict(counts)}, expected {customers}, {entries}")
        info = SeedInfo(
            merchant_id=str(merchant_id),
            customers=customers,
            entries=entries,
            seeded_at=now.isoformat(timespec="seconds"),
            seconds=round(time.perf_counter() - started, 1),
        )
        _, name = admin_url(database_url)
        comment = MARKER + json.dumps(asdict(info))
        await connection.execute(
            f"COMMENT ON DATABASE {_quote(name)} IS '{comment.replace(chr(39), chr(39) * 2)}'"
        )
    finally:
        await connection.close()
    print(
        f"seeded in {info.seconds:.0f} s: {counts['customers']:,} customers, "
        f"{counts['entries']:,} entries, {counts['pending']:,} pending credits, "
        f"{counts['rollups']:,} rollup rows; database {counts['size']}"
    )
    return info


async def ensure_seeded(
    database_url: str,
    customers: int,
    entries: int,
    *,
    replace: bool = False,
    shards: int = ROLLUP_SHARDS,
    parallel: int = 0,
    verify: bool = True,
) -> SeedInfo:
    """The database seeded with these sizes: reused when it is, else created and
    seeded (a database of that name seeded otherwise only with ``replace``)."""
    info = await read_marker(database_url)
    if info is not None and (info.customers, info.entries) == (customers, entries) and not replace:
        print(
            f"reusing {database_url}: {info.customers:,} customers, {info.entries:,} entries, "
            f"seeded at {info.seeded_at} (in {info.seconds:.0f} s)"
        )
        return info
    if await database_exists(database_url):
        if not replace:
            found = (
                f"seeded with {info.customers:,} customers and {info.entries:,} entries"
                if info
                else "not seeded by this script"
            )
            raise SystemExit(
                f"{database_url} exists, {found}; pass --replace to drop and seed it again"
            )
        await drop_database(database_url)
    await _create_database(database_url)
    try:
        return await seed(
            database_url, customers, entries, shards=shards, parallel=parallel, verify=verify
        )
    except BaseException:
        print(f"\nseeding failed: dropping {database_url}")
        await drop_database(database_url)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared with the benchmarks that run on a seeded database."""
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument(
        "--replace", action="store_true", help="drop and seed again a database of that name"
    )
    parser.add_argument(
        "--parallel", type=int, default=0, help="parallel workers per index build (default 0)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the consistency checks")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.seed_scale", description=(__doc__ or "").split("\n")[0]
    )
    add_arguments(parser)
    options = parser.parse_args()
    if options.customers < 1 or options.entries < 0:
        parser.error("--customers must be at least 1 and --entries at least 0")
    info = asyncio.run(
        ensure_seeded(
            options.database_url,
            options.customers,
            options.entries,
            replace=options.replace,
            parallel=options.parallel,
            verify=not options.no_verify,
        )
    )
    print(f"merchant {info.merchant_id}")


if __name__ == "__main__":
    main()
