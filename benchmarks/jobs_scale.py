"""Scheduled jobs at scale: one ``loyalty worker --once`` with a million customers' due work.

    python -m benchmarks.jobs_scale [--database-url URL] [--customers 1000000] [--keep]
                                    [--explain-only]

The database named by ``--database-url`` (default
``postgresql://postgres@127.0.0.1:5432/loyalty_bench_jobs``) is dropped if it
exists, created, migrated to head and seeded, set-based (``INSERT … SELECT …
generate_series``), with two merchants made by
``merchants.service.create_merchant``:

- **fixed** (``expiry_policy='fixed'``, 30 days; a birthday earn rule of 50
  points): ``--customers`` customers, each with two earned credits, each still
  a whole lot (``point_lots``): the first due (expired one to five days ago)
  for one customer in ten, else expiring in 1 to 29 days; the second expiring
  in 30 days. One customer in twenty has a hold due (``pending_credits``
  ``pending``, ``available_at`` in the past), another one in twenty a hold due
  in twelve days. Dates of birth: one customer in five hundred was born on
  today's date, three in five on a date of a 55-year span, the rest unknown;
  one in fifty is ``inactive``;
- **inactivity** (``expiry_policy='inactivity'``, 180 days, changed 400 days
  ago): a tenth as many customers with one credit each and no lot, last
  active 0 to 199 days ago (one in ten past the 180 days; one in a thousand
  never active, so due too).

Balances are the sums of the entries (sequence and ``balance_after`` in
order), the lots' remaining points are the whole credits
(``expiring_lots_minor``, ``next_expiry_at``/``_minor`` from them),
``pending_points_minor`` the holds, and ``daily_rollups`` are made from it all
as ``benchmarks.seed_scale`` makes them. Secondary indexes and keys of the
loaded tables are dropped for the load and created again, then ``VACUUM
ANALYZE``.

Then every due-finding query is ``EXPLAIN (ANALYZE, BUFFERS)``ed on the seeded
state (in a transaction rolled back), ``loyalty worker --once`` is run as a
subprocess and timed (wall clock) with what it printed, the result is
verified (nothing due left; balances equal to their entries, lots to
``expiring_lots_minor``, holds to ``pending_points_minor``, rollups to the
entries), and a second ``--once`` (nothing due) is timed. ``--keep`` keeps the
database; ``--explain-only`` only explains the queries on a kept one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.seed_scale import (
    admin_url,
    database_exists,
    definitions,
    drop_database,
    rollups_sql,
    step,
)
from loyalty.db.engine import Database, driver_url
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.ids import new_id, uuid7_floor
from loyalty.ledger import repository as ledger_repository
from loyalty.ledger.engine.changes import ENTRY_METRIC_PREFIX, ROLLUP_SHARDS
from loyalty.merchants import service as merchants_service
from loyalty.settings import Settings
from loyalty.webhooks.repository import CLAIM_POSTGRES

DEFAULT_DATABASE_URL = os.environ.get(
    "LOYALTY_BENCH_JOBS_URL", "postgresql://postgres@127.0.0.1:5432/loyalty_bench_jobs"
)
EXPIRY_DAYS = 30
INACTIVITY_DAYS = 180
BIRTHDAY_POINTS_MINOR = 5000
LOADED_TABLES = (
    "customers",
    "customer_balances",
    "ledger_entries",
    "point_lots",
    "pending_credits",
    "daily_rollups",
)
LOYALTY = Path(sys.executable).with_name("loyalty")


def _uuid7(epoch_seconds: str, random_hex: str) -> str:
    """SQL: a UUIDv7 of that time (milliseconds) with bits from 32 hex digits."""
    return (
        f"(lpad(to_hex(floor(({epoch_seconds}) * 1000)::int8), 12, '0') || '7' "
        f"|| substr({random_hex}, 1, 3) || '8' || substr({random_hex}, 4, 15))::uuid"
    )


# --- the seed ---------------------------------------------------------------------------
# Customer n of the fixed-expiry merchant: its two credits (a, b), its hold, its birth date.
# $1 N, $2 now.
_FIXED_SQL = f"""
CREATE TEMP TABLE jobs_fixed AS
SELECT *, {_uuid7("extract(epoch FROM created_at)", "md5('fc' || n)")} AS id,
       {_uuid7("extract(epoch FROM a_at)", "md5('fa' || n)")} AS a_id,
       {_uuid7("extract(epoch FROM b_at)", "md5('fb' || n)")} AS b_id,
       {_uuid7("extract(epoch FROM hold_at)", "md5('fh' || n)")} AS hold_id
FROM (
    SELECT n,
           $2::timestamptz - interval '400 days'
               + make_interval(secs => 300 * 86400.0 * n / $1) AS created_at,
           CASE WHEN n % 50 = 7 THEN 'inactive' ELSE 'active' END AS status,
           100 * (10 + n % 491)::int8 AS a_points,
           CASE WHEN n % 10 = 0
                THEN $2::timestamptz - interval '{EXPIRY_DAYS + 1} days'
                     - make_interval(hours => n % 97)
                ELSE $2::timestamptz - make_interval(days => 1 + n % 29) END AS a_at,
           100 * (5 + n % 197)::int8 AS b_points,
           $2::timestamptz - make_interval(hours => n % 24) - interval '1 minute' AS b_at,
           CASE WHEN n % 20 = 1 THEN 1 WHEN n % 20 = 3 THEN 2 ELSE 0 END AS hold,
           100 * (20 + n % 181)::int8 AS hold_points,
           CASE WHEN n % 20 = 1 THEN $2::timestamptz - interval '15 days'
                ELSE $2::timestamptz - interval '2 days' END AS hold_at,
           CASE WHEN n % 20 = 1
                THEN $2::timestamptz - interval '1 day' + make_interval(secs => n % 1000)
                ELSE $2::timestamptz + interval '12 days' END AS available_at,
           CASE WHEN n % 500 = 11 THEN ($3::date - make_interval(years => 20 + n % 40))::date
                WHEN n % 5 < 3 THEN date '1950-01-01' + ((n::int8 * 7919) % 20000)::int
           END AS dob
    FROM generate_series(1, $1) AS n
) AS drawn
"""

# Customer n of the inactivity merchant: one credit (no lot). $1 N, $2 now.
_IDLE_SQL = f"""
CREATE TEMP TABLE jobs_idle AS
SELECT *, {_uuid7("extract(epoch FROM created_at)", "md5('ic' || n)")} AS id,
       {_uuid7("extract(epoch FROM a_at)", "md5('ia' || n)")} AS a_id
FROM (
    SELECT n, $2::timestamptz - interval '400 days' AS created_at,
           100 * (10 + n % 491)::int8 AS a_points,
           $2::timestamptz - make_interval(days => n % 200) - interval '1 hour' AS a_at
    FROM generate_series(1, $1) AS n
) AS drawn
"""

_CUSTOMERS_SQL = """
INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
    first_name_search, last_name_search, date_of_birth, status, total_spent_minor,
    created_at, updated_at)
SELECT $1, id, '{prefix}' || n, '{prefix}' || n || '@example.com', 'Jo', 'Bench', 'jo',
       'bench', {dob}, {status}, 0, created_at, created_at
FROM {table} ORDER BY n
"""

_ENTRY_COLUMNS = """(merchant_id, id, customer_id, sequence, points_minor, kind,
    description, visible_to_customer, apply_to_lifetime, lifetime_delta_minor,
    balance_after_minor, expires_at, created_at, actor)"""
_FIXED_ENTRIES_SQL = f"""
INSERT INTO ledger_entries {_ENTRY_COLUMNS}
SELECT $1::uuid, a_id, id, 1, a_points, 'earn', 'Points for order #' || n, true, true, a_points,
       a_points, a_at + interval '{EXPIRY_DAYS} days', a_at, 'api_key:bench'
FROM jobs_fixed
UNION ALL
SELECT $1::uuid, b_id, id, 2, b_points, 'earn', 'Points for order #' || n || '-2', true, true,
       b_points, a_points + b_points, b_at + interval '{EXPIRY_DAYS} days', b_at,
       'api_key:bench'
FROM jobs_fixed
"""
_IDLE_ENTRIES_SQL = f"""
INSERT INTO ledger_entries {_ENTRY_COLUMNS}
SELECT $1::uuid, a_id, id, 1, a_points, 'earn', 'Points for order #' || n, true, true, a_points,
       a_points, NULL, a_at, 'api_key:bench'
FROM jobs_idle
"""
_LOTS_SQL = f"""
INSERT INTO point_lots (merchant_id, id, customer_id, remaining_minor, expires_at, created_at)
SELECT $1::uuid, a_id, id, a_points, a_at + interval '{EXPIRY_DAYS} days', a_at FROM jobs_fixed
UNION ALL
SELECT $1::uuid, b_id, id, b_points, b_at + interval '{EXPIRY_DAYS} days', b_at FROM jobs_fixed
"""
_HOLDS_SQL = """
INSERT INTO pending_credits (merchant_id, id, customer_id, points_minor,
    points_cancelled_minor, kind, description, visible_to_customer, apply_to_lifetime,
    status, available_at, created_at)
SELECT $1, hold_id, id, hold_points, 0, 'earn', 'Points for order #' || n || '-h', true,
       true, 'pending', available_at, hold_at
FROM jobs_fixed WHERE hold > 0
"""
# The second credit always expires after the first: the first is the next to expire.
_FIXED_BALANCES_SQL = f"""
INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
    pending_points_minor, lifetime_points_minor, last_sequence, last_activity_at,
    expiring_lots_minor, next_expiry_at, next_expiry_minor, updated_at)
SELECT $1, id, a_points + b_points, CASE WHEN hold > 0 THEN hold_points ELSE 0 END,
       a_points + b_points, 2, b_at, a_points + b_points,
       a_at + interval '{EXPIRY_DAYS} days', a_points, greatest(b_at, hold_at)
FROM jobs_fixed ORDER BY n
"""
_IDLE_BALANCES_SQL = """
INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
    lifetime_points_minor, last_sequence, last_activity_at, updated_at)
SELECT $1, id, a_points, a_points, 1, CASE WHEN n % 1000 = 0 THEN NULL ELSE a_at END, a_at
FROM jobs_idle ORDER BY n
"""


async def _session(connection: asyncpg.Connection) -> None:
    for setting in (
        "synchronous_commit = off",
        "maintenance_work_mem = '1GB'",
        "work_mem = '256MB'",
        "max_parallel_workers_per_gather = 0",
        "jit = off",
    ):
        await connection.execute(f"SET {setting}")


async def _create_merchants(database_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    database = Database(Settings(database_url=database_url), pool_size=1)

    async def work(connection: AsyncConnection) -> tuple[uuid.UUID, uuid.UUID]:
        fixed = await merchants_service.create_merchant(connection, "Jobs benchmark: fixed")
        idle = await merchants_service.create_merchant(connection, "Jobs benchmark: inactivity")
        return fixed.id, idle.id

    try:
        return await database.transaction(work)
    finally:
        await database.dispose()


async def seed(database_url: str, customers: int) -> None:
    now = datetime.now(UTC)
    idle_customers = max(1, customers // 10)
    server, name = admin_url(database_url)
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    print(f"seeding {customers:,} + {idle_customers:,} customers into {database_url}")
    with step("migrating to head"):
        await upgrade_to_head_async(database_url)
    fixed_id, idle_id = await _create_merchants(database_url)
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        await _session(connection)
        await connection.execute(
            "UPDATE program_settings SET expiry_policy = $2, expiry_days = $3, "
            "expiry_changed_at = $4 WHERE merchant_id = $1",
            fixed_id, "fixed", EXPIRY_DAYS, now - timedelta(days=400),
        )  # fmt: skip
        await connection.execute(
            "UPDATE program_settings SET expiry_policy = $2, expiry_days = $3, "
            "expiry_changed_at = $4 WHERE merchant_id = $1",
            idle_id, "inactivity", INACTIVITY_DAYS, now - timedelta(days=400),
        )  # fmt: skip
        await connection.execute(
            "INSERT INTO earn_rules (merchant_id, id, type, points_minor, active, created_at, "
            "updated_at) VALUES ($1, $2, 'birthday', $3, true, $4, $4)",
            fixed_id, new_id(), BIRTHDAY_POINTS_MINOR, now - timedelta(days=400),
        )  # fmt: skip
        dropped = await definitions(connection, LOADED_TABLES)
        with step(f"dropping {len(dropped)} indexes and keys of the loaded tables"):
            for definition in reversed(dropped):
                await connection.execute(definition.drop)
        with step("customers drawn (temp tables)"):
            await connection.execute(_FIXED_SQL, customers, now, now.date())
            await connection.execute(_IDLE_SQL, idle_customers, now)
        with step(f"{customers + idle_customers:,} customers"):
            await connection.execute(
                _CUSTOMERS_SQL.format(prefix="f", dob="dob", status="status", table="jobs_fixed"),
                fixed_id,
            )
            await connection.execute(
                _CUSTOMERS_SQL.format(prefix="i", dob="NULL", status="'active'", table="jobs_idle"),
                idle_id,
            )
        with step(f"{2 * customers + idle_customers:,} ledger entries"):
            await connection.execute(_FIXED_ENTRIES_SQL, fixed_id)
            await connection.execute(_IDLE_ENTRIES_SQL, idle_id)
        with step(f"{2 * customers:,} lots"):
            await connection.execute(_LOTS_SQL, fixed_id)
        with step("holds"):
            await connection.execute(_HOLDS_SQL, fixed_id)
        with step(f"{customers + idle_customers:,} balances"):
            await connection.execute(_FIXED_BALANCES_SQL, fixed_id)
            await connection.execute(_IDLE_BALANCES_SQL, idle_id)
        with step("daily rollups"):
            for merchant_id in (fixed_id, idle_id):
                await connection.execute(rollups_sql(ROLLUP_SHARDS), merchant_id)
        with step(f"creating {len(dropped)} indexes and keys again"):
            for definition in dropped:
                await connection.execute(definition.create)
        for table in LOADED_TABLES:
            with step(f"VACUUM ANALYZE {table}"):
                await connection.execute(f"VACUUM (ANALYZE) {table}")
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# --- verification ----------------------------------------------------------------------

_CHECKS = {
    "balances differing from their entries": """
        SELECT count(*) FROM customer_balances AS b
        LEFT JOIN (SELECT merchant_id, customer_id, sum(points_minor) AS balance,
                          sum(lifetime_delta_minor) AS lifetime, max(sequence) AS last,
                          count(*) AS entries
                   FROM ledger_entries GROUP BY merchant_id, customer_id) AS e
          ON e.merchant_id = b.merchant_id AND e.customer_id = b.customer_id
        WHERE b.points_balance_minor <> coalesce(e.balance, 0)
           OR b.lifetime_points_minor <> coalesce(e.lifetime, 0)
           OR b.last_sequence <> coalesce(e.last, 0)
           OR coalesce(e.entries, 0) <> coalesce(e.last, 0)""",
    "last entries whose balance_after is not the balance": """
        SELECT count(*) FROM ledger_entries AS e
        JOIN customer_balances AS b ON b.merchant_id = e.merchant_id
          AND b.customer_id = e.customer_id AND b.last_sequence = e.sequence
        WHERE e.balance_after_minor <> b.points_balance_minor""",
    "balances whose lots differ from expiring_lots/next_expiry": """
        SELECT count(*) FROM customer_balances AS b
        LEFT JOIN (SELECT merchant_id, customer_id, sum(remaining_minor) AS lots,
                          min(expires_at) AS next_at
                   FROM point_lots GROUP BY merchant_id, customer_id) AS l
          ON l.merchant_id = b.merchant_id AND l.customer_id = b.customer_id
        WHERE b.expiring_lots_minor <> coalesce(l.lots, 0)
           OR b.next_expiry_at IS DISTINCT FROM l.next_at
           OR b.expiring_lots_minor > b.points_balance_minor""",
    "balances whose holds differ from pending_points": """
        SELECT count(*) FROM customer_balances AS b
        LEFT JOIN (SELECT merchant_id, customer_id,
                          sum(points_minor - points_cancelled_minor) AS pending
                   FROM pending_credits WHERE status = 'pending'
                   GROUP BY merchant_id, customer_id) AS p
          ON p.merchant_id = b.merchant_id AND p.customer_id = b.customer_id
        WHERE b.pending_points_minor <> coalesce(p.pending, 0)""",
    "entry rollups differing from the entries": f"""
        SELECT count(*) FROM (
            SELECT merchant_id, metric, sum(plus_minor) AS plus, sum(minus_minor) AS minus,
                   sum(count) AS counted
            FROM daily_rollups WHERE metric LIKE '{ENTRY_METRIC_PREFIX}%'
            GROUP BY merchant_id, metric
        ) AS r FULL JOIN (
            SELECT merchant_id, '{ENTRY_METRIC_PREFIX}' || kind AS metric,
                   sum(greatest(points_minor, 0)) AS plus,
                   sum(greatest(-points_minor, 0)) AS minus, count(*) AS counted
            FROM ledger_entries GROUP BY merchant_id, kind
        ) AS t ON t.merchant_id = r.merchant_id AND t.metric = r.metric
        WHERE r.plus IS DISTINCT FROM t.plus OR r.minus IS DISTINCT FROM t.minus
           OR r.counted IS DISTINCT FROM t.counted""",
    "points: sum of balances minus sum of entries": """
        SELECT (SELECT coalesce(sum(points_balance_minor), 0) FROM customer_balances)
             - (SELECT coalesce(sum(points_minor), 0) FROM ledger_entries)""",
}


def _positional(sql: str, parameters: dict[str, object]) -> tuple[str, list[object]]:
    """A ``text()`` query's ``:name`` parameters as asyncpg's ``$n``."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    converted = re.sub(r"(?<!:):([a-z_]+)", number, sql)
    return converted, [parameters[name] for name in names]


def _due_queries(
    now: datetime, some_merchant: uuid.UUID
) -> dict[str, tuple[str, dict[str, object]]]:
    """Every job's due-finding query, as the application runs it on Postgres."""
    queries: dict[str, tuple[str, dict[str, object]]] = {}
    page = {"now": now, "limit": 500}
    for job, sql in ledger_repository._DUE.items():
        queries[f"points_maintenance: {job}"] = (sql, page)
    queries["points_maintenance: inactive_expired"] = (
        ledger_repository._INACTIVE["postgresql"],
        page,
    )
    sql, parameters = ledger_repository._birthday_query(False, now)
    queries["points_maintenance: birthdays_rewarded"] = (sql, {**parameters, "limit": 500})
    queries["rewards_expiry (rewards.repository.claim_due_for_expiry)"] = (
        """SELECT r.*, c.external_id FROM customer_rewards r
           JOIN customers c ON c.merchant_id = r.merchant_id AND c.id = r.customer_id
           WHERE r.status = 'active' AND r.expires_at <= :now
           ORDER BY r.expires_at LIMIT :limit FOR UPDATE OF r SKIP LOCKED""",
        page,
    )
    queries["idempotency_purge (idempotency.repository.purge_older_than)"] = (
        "DELETE FROM idempotency_keys WHERE created_at < :cutoff",
        {"cutoff": now - timedelta(days=7)},
    )
    queries["events_purge (events.repository.purge_before, per merchant)"] = (
        """DELETE FROM events WHERE merchant_id = :merchant AND id IN (
               SELECT id FROM events WHERE merchant_id = :merchant AND id < :bound
                 AND sequence IS NOT NULL ORDER BY id LIMIT 5000)""",
        {
            "merchant": some_merchant,
            "bound": uuid7_floor(int((now - timedelta(days=30)).timestamp() * 1000)),
        },
    )
    queries["imports_resume (imports.repository: an abandoned import)"] = (
        """SELECT merchant_id, id, source, file_sha256, locked_until FROM imports
           WHERE status IN ('validating', 'running')
             AND (locked_until IS NULL OR locked_until < :now)
           ORDER BY locked_until LIMIT 1 FOR UPDATE SKIP LOCKED""",
        {"now": now},
    )
    queries["event stamping (events.repository.next_merchant_with_unstamped)"] = (
        "SELECT merchant_id FROM events WHERE sequence IS NULL ORDER BY merchant_id LIMIT 1",
        {},
    )
    queries["webhook delivery claim (webhooks.repository.CLAIM_POSTGRES)"] = ("", {})
    return queries


async def explain(database_url: str, now: datetime) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) every due-finding query, in a transaction rolled back."""
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        sizes = await connection.fetch(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname = ANY($1) "
            "ORDER BY relname",
            [
                "customers", "customer_balances", "point_lots", "pending_credits", "events",
                "customer_rewards", "idempotency_keys", "imports", "webhook_attempts",
                "earn_rules", "program_settings", "customer_actions",
            ],
        )  # fmt: skip
        print("\ntable sizes (live rows): " + ", ".join(f"{r[0]} {r[1]:,}" for r in sizes))
        merchant = await connection.fetchval("SELECT id FROM merchants ORDER BY id LIMIT 1")
        for label, (sql, parameters) in _due_queries(now, merchant).items():
            transaction = connection.transaction()
            await transaction.start()
            try:
                if not sql:
                    statement, arguments = CLAIM_POSTGRES, [
                        now, 500, [], 10, [], [], 500, now + timedelta(seconds=60),
                    ]  # fmt: skip
                else:
                    statement, arguments = _positional(sql, parameters)
                plan = await connection.fetch(
                    f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", *arguments
                )
            finally:
                await transaction.rollback()
            print(f"\n-- {label}")
            for row in plan:
                print("   " + row[0])
        # The birthday query as it was (to_char), for comparison.
        sql, parameters = ledger_repository._birthday_query(False, now)
        old = sql.replace(
            ledger_repository.BIRTHDAY_KEY["postgresql"], "to_char(c.date_of_birth, 'MM-DD')"
        ).replace("CAST(:today AS integer)", ":today")
        old = old.replace("CAST(:also_today AS integer)", ":also_today")
        day = now.astimezone(UTC).strftime("%m-%d")
        statement, arguments = _positional(
            old, {**parameters, "today": day, "also_today": day, "limit": 500}
        )
        transaction = connection.transaction()
        await transaction.start()
        try:  # without the index (dropped in a transaction rolled back)
            await connection.execute("DROP INDEX ix_customers_birthday")
            plan = await connection.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", *arguments
            )
        finally:
            await transaction.rollback()
        print("\n-- birthdays_rewarded before migration 0014 (to_char, not indexable)")
        for row in plan:
            print("   " + row[0])
    finally:
        await connection.close()


async def _figures(database_url: str, since: datetime) -> dict[str, Any]:
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        row = await connection.fetchrow(
            """SELECT
                 (SELECT count(*) FROM ledger_entries WHERE kind = 'expire' AND created_at >= $1)
                   AS expiries,
                 (SELECT coalesce(-sum(points_minor), 0) FROM ledger_entries
                   WHERE kind = 'expire' AND created_at >= $1) AS expired_minor,
                 (SELECT count(*) FROM pending_credits WHERE status = 'released'
                   AND released_at >= $1) AS released,
                 (SELECT count(*) FROM customer_actions WHERE action = 'birthday'
                   AND created_at >= $1) AS birthdays,
                 (SELECT count(*) FROM point_lots WHERE expires_at <= $1) AS due_lots,
                 (SELECT count(*) FROM pending_credits WHERE status = 'pending'
                   AND available_at <= $1) AS due_holds,
                 (SELECT count(*) FROM events WHERE created_at >= $1) AS events""",
            since,
        )
        assert row is not None
        figures: dict[str, Any] = dict(row)
        for job in ("inactive_expired", "birthdays_rewarded"):
            async with _sqlalchemy(database_url) as sa_connection:
                figures[f"due_{job}"] = len(
                    await ledger_repository.due_customers(
                        sa_connection, job, since, sqlite=False, limit=1_000_000
                    )
                )
        return figures
    finally:
        await connection.close()


class _sqlalchemy:
    """A read connection of the application's engine."""

    def __init__(self, database_url: str) -> None:
        self.database = Database(Settings(database_url=database_url), pool_size=1)
        self.context: Any = None

    async def __aenter__(self) -> AsyncConnection:
        await self.database.start()
        self.context = self.database.read()
        connection: AsyncConnection = await self.context.__aenter__()
        return connection

    async def __aexit__(self, *exc: object) -> None:
        await self.context.__aexit__(*exc)
        await self.database.dispose()


async def verify(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        found = {}
        for label, sql in _CHECKS.items():
            with step(f"verifying: {label}"):
                found[label] = int(await connection.fetchval(sql))
        return found
    finally:
        await connection.close()


def run_worker(database_url: str, label: str) -> tuple[float, str]:
    environment = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    started = time.perf_counter()
    result = subprocess.run(
        [str(LOYALTY), "worker", "--once"],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    print(f"\n{label}: loyalty worker --once exited {result.returncode} in {seconds:.1f} s")
    for line in result.stdout.splitlines():
        print("   " + line)
    job_lines = [line for line in result.stderr.splitlines() if "job_run" in line]
    for line in job_lines:
        print("   log: " + line[:300])
    if result.returncode != 0:
        print(result.stderr[-4000:])
        raise SystemExit(f"the worker failed ({result.returncode})")
    return seconds, result.stdout


async def main_async(options: argparse.Namespace) -> None:
    database_url = options.database_url
    if options.explain_only:
        if not await database_exists(database_url):
            raise SystemExit(f"{database_url} does not exist (run without --explain-only)")
        await explain(database_url, datetime.now(UTC))
        return
    started = time.perf_counter()
    await seed(database_url, options.customers)
    print(f"seeded in {time.perf_counter() - started:.0f} s")
    try:
        await explain(database_url, datetime.now(UTC))
        before = datetime.now(UTC)
        print("\ndue before the run:", await _figures(database_url, before))
        busy, _ = run_worker(database_url, "first run (everything due)")
        after = await _figures(database_url, before)
        print("done by the run:", after)
        checks = await verify(database_url)
        print("consistency (all should be 0):", checks)
        idle, _ = run_worker(database_url, "second run (nothing due)")
        print(
            f"\nworker --once: {busy:.1f} s with everything due ({after['expiries']:,} expiries, "
            f"{after['released']:,} holds released, {after['birthdays']:,} birthdays); "
            f"{idle:.1f} s with nothing due"
        )
        if any(checks.values()) or after["due_lots"] or after["due_holds"]:
            raise SystemExit("something due was left, or the ledger is inconsistent")
    finally:
        if not options.keep:
            await drop_database(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.jobs_scale", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument(
        "--explain-only", action="store_true", help="only EXPLAIN the queries on a kept database"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
