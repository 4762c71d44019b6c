"""Export benchmark: ``loyalty export`` in constant memory, whatever the row count.

    python -m benchmarks.exports [--customers 1000000] [--entries 5000000]
                                 [--skip-sqlite] [--skip-postgres] [--keep]

On a fresh database of each kind (Postgres: ``loyalty_bench_exports_*``,
created here and dropped at the end; SQLite: a file in a temporary
directory) it seeds one merchant with ``--customers`` customers (names,
emails, a tier for one in ten, balances) and ``--entries`` ledger entries
spread over them (a credit, then a debit, in turn, per customer, so every
balance and sequence is consistent; one description in fifty starts with
``=``), by set-based SQL: ``INSERT … SELECT generate_series`` on Postgres, a
recursive CTE on SQLite. Ids are time-ordered, as the application's UUIDv7.

Then, for each export, it prints the query plan of one chunk (a plan that
sorts reads every row of the merchant for every chunk) and runs ``loyalty
export customers|transactions --output FILE`` in a subprocess, and reports
rows/s, the file's size and the process's peak RSS (``/usr/bin/time``,
Debian package ``time``). The same export of an empty merchant gives the
process's floor (interpreter, SQLAlchemy, drivers), so ``peak RSS - floor``
is what the export itself held. Run it at two sizes: the peak stays the same.

The keyset scan of the ledger reads ``(merchant_id, created_at, id)`` in
order; the index ``ix_ledger_entries_created_at`` on those columns is created
here if the schema lacks it (and the plan is shown before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.__main__ import _admin
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head
from loyalty.exports import repository
from loyalty.merchants import service as merchants_service
from loyalty.settings import Settings

CHUNK_ROWS = 5_000
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
ENTRY_INDEX = "ix_ledger_entries_created_at"
POINTS_CREDIT_MINOR = 1_000  # 10 points
POINTS_DEBIT_MINOR = -500  # -5 points


@dataclass
class Measure:
    database: str
    export: str
    rows: int
    seconds: float
    file_bytes: int
    peak_rss_mib: float
    floor_rss_mib: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")


# --- seeding -------------------------------------------------------------------


async def _create_merchants(database_url: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """The merchant that gets the data, an empty one (the floor), and a tier."""
    database = Database(Settings(database_url=database_url), pool_size=1)

    async def work(connection: AsyncConnection) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        merchant = await merchants_service.create_merchant(connection, "Export benchmark")
        empty = await merchants_service.create_merchant(connection, "Empty shop")
        tier_id = uuid.uuid4()
        await connection.execute(
            text(
                "INSERT INTO tiers (merchant_id, id, name, threshold_minor, "
                "multiplier_hundredths, created_at, updated_at) "
                "VALUES (:m, :t, 'Gold', 100000, 100, :now, :now)"
            ),
            {"m": _bind_uuid(database, merchant.id), "t": _bind_uuid(database, tier_id),
             "now": _bind_time(database, BASE_TIME)},
        )  # fmt: skip
        return merchant.id, empty.id, tier_id

    try:
        return await database.transaction(work)
    finally:
        await database.dispose()


def _bind_uuid(database: Database, value: uuid.UUID) -> Any:
    return value.hex if database.is_sqlite else value


def _bind_time(database: Database, value: datetime) -> Any:
    if database.is_sqlite:
        return value.replace(tzinfo=None).isoformat(" ", timespec="microseconds")
    return value


# Entry g (0-based) belongs to customer g % N and is its (g // N + 1)-th entry:
# odd sequences credit 10 points, even ones debit 5, so after k entries the
# balance is 10 * ceil(k / 2) - 5 * floor(k / 2) points.

_POSTGRES_SEED = [
    """CREATE TEMP TABLE bench_customers AS
       SELECT n, (lpad(to_hex(n), 12, '0') || '7' || substr(md5(n::text), 1, 19))::uuid AS id
       FROM generate_series(0, :customers - 1) AS n""",
    "CREATE UNIQUE INDEX ON bench_customers (n)",
    """INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
         first_name_search, last_name_search, status, total_spent_minor, created_at, updated_at)
       SELECT :merchant, id, 'c' || n, 'c' || n || '@example.com', 'First' || n,
         CASE WHEN n % 100 = 0 THEN '-Last' || n ELSE 'Last' || n END,
         'first' || n, CASE WHEN n % 100 = 0 THEN '-last' || n ELSE 'last' || n END,
         'active', (n % 1000) * 100,
         CAST(:base AS timestamptz) + n * interval '1 second',
         CAST(:base AS timestamptz) + n * interval '1 second'
       FROM bench_customers""",
    """INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
         lifetime_points_minor, points_spent_minor, last_sequence, tier_id, updated_at)
       SELECT :merchant, id,
         1000 * ((k + 1) / 2) - 500 * (k / 2), 1000 * ((k + 1) / 2), 500 * (k / 2), k,
         CASE WHEN n % 10 = 0 THEN CAST(:tier AS uuid) END, CAST(:base AS timestamptz)
       FROM (SELECT n, id, CASE WHEN :entries > n THEN (:entries - n - 1) / :customers + 1
                               ELSE 0 END AS k
             FROM bench_customers) AS counted""",
    """INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind,
         description, internal_note, visible_to_customer, apply_to_lifetime,
         lifetime_delta_minor, balance_after_minor, expires_at, created_at)
       SELECT :merchant,
         (lpad(to_hex(g), 12, '0') || '7' || substr(md5(g::text), 1, 19))::uuid,
         c.id, s, CASE WHEN s % 2 = 1 THEN 1000 ELSE -500 END, 'adjustment',
         CASE WHEN g % 50 = 0 THEN '=Order ' || g ELSE 'Order #' || g END,
         CASE WHEN g % 7 = 0 THEN 'note, "quoted"' END, true, s % 2 = 1,
         CASE WHEN s % 2 = 1 THEN 1000 ELSE 0 END,
         1000 * ((s + 1) / 2) - 500 * (s / 2), NULL,
         CAST(:base AS timestamptz) + g * interval '1 second'
       FROM (SELECT g, g / :customers + 1 AS s, g % :customers AS n
             FROM generate_series(0, :entries - 1) AS g) AS numbered
       JOIN bench_customers c ON c.n = numbered.n""",
    "DROP TABLE bench_customers",
]

_SQLITE_SEED = [
    """CREATE TEMP TABLE bench_customers (n INTEGER PRIMARY KEY, id TEXT NOT NULL)""",
    """WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < :customers)
       INSERT INTO bench_customers (n, id)
       SELECT n, printf('%012x', n) || '7' || substr(lower(hex(randomblob(10))), 1, 19) FROM g""",
    """INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
         first_name_search, last_name_search, status, total_spent_minor, rewarded_actions,
         referred_completed, created_at, updated_at)
       SELECT :merchant, id, 'c' || n, 'c' || n || '@example.com', 'First' || n,
         CASE WHEN n % 100 = 0 THEN '-Last' || n ELSE 'Last' || n END,
         'first' || n, CASE WHEN n % 100 = 0 THEN '-last' || n ELSE 'last' || n END,
         'active', (n % 1000) * 100, '[]', 0,
         strftime('%Y-%m-%d %H:%M:%S', :base, '+' || n || ' seconds') || '.000000',
         strftime('%Y-%m-%d %H:%M:%S', :base, '+' || n || ' seconds') || '.000000'
       FROM bench_customers""",
    """INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
         pending_points_minor, lifetime_points_minor, points_spent_minor, points_expired_minor,
         store_credit_balance_minor, last_sequence, expiring_lots_minor, next_expiry_minor,
         tier_id, updated_at)
       SELECT :merchant, id,
         1000 * ((k + 1) / 2) - 500 * (k / 2), 0, 1000 * ((k + 1) / 2), 500 * (k / 2), 0, 0,
         k, 0, 0, CASE WHEN n % 10 = 0 THEN :tier END, :base_text
       FROM (SELECT n, id, CASE WHEN :entries > n THEN (:entries - n - 1) / :customers + 1
                               ELSE 0 END AS k
             FROM bench_customers)""",
    """WITH RECURSIVE g(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM g WHERE g + 1 < :entries)
       INSERT INTO ledger_entries (merchant_id, id, customer_id, sequence, points_minor, kind,
         description, internal_note, visible_to_customer, apply_to_lifetime,
         lifetime_delta_minor, balance_after_minor, expires_at, created_at)
       SELECT :merchant, printf('%012x', g) || '7' || substr(lower(hex(randomblob(10))), 1, 19),
         c.id, s, CASE WHEN s % 2 = 1 THEN 1000 ELSE -500 END, 'adjustment',
         CASE WHEN g % 50 = 0 THEN '=Order ' || g ELSE 'Order #' || g END,
         CASE WHEN g % 7 = 0 THEN 'note, "quoted"' END, 1, s % 2 = 1,
         CASE WHEN s % 2 = 1 THEN 1000 ELSE 0 END,
         1000 * ((s + 1) / 2) - 500 * (s / 2), NULL,
         strftime('%Y-%m-%d %H:%M:%S', :base, '+' || g || ' seconds') || '.000000'
       FROM (SELECT g, g / :customers + 1 AS s, g % :customers AS n FROM g) AS numbered
       JOIN bench_customers c ON c.n = numbered.n""",
    "DROP TABLE bench_customers",
]


async def seed(database_url: str, customers: int, entries: int) -> tuple[uuid.UUID, uuid.UUID]:
    """Seed one merchant; returns its id and an empty merchant's."""
    merchant_id, empty_id, tier_id = await _create_merchants(database_url)
    database = Database(Settings(database_url=database_url), pool_size=1)
    params: dict[str, Any] = {
        "merchant": _bind_uuid(database, merchant_id),
        "tier": _bind_uuid(database, tier_id),
        "customers": customers,
        "entries": entries,
    }
    if database.is_sqlite:
        params["base"] = BASE_TIME.strftime("%Y-%m-%d %H:%M:%S")
        params["base_text"] = _bind_time(database, BASE_TIME)
        statements = _SQLITE_SEED
    else:
        params["base"] = BASE_TIME
        statements = _POSTGRES_SEED

    async def work(connection: AsyncConnection) -> None:
        if database.is_sqlite:
            # A large page cache: the entries' indexes are written out of order.
            await connection.exec_driver_sql("PRAGMA cache_size = -2000000")
        for statement in statements:
            started = time.monotonic()
            await connection.execute(text(statement), params)
            first_line = " ".join(statement.split())[:60]
            print(f"  {time.monotonic() - started:7.1f} s  {first_line}…", flush=True)

    try:
        await database.transaction(work)
        async with database.engine.connect() as connection:
            await connection.exec_driver_sql("ANALYZE")
            await connection.commit()
    finally:
        await database.dispose()
    return merchant_id, empty_id


# --- plans ---------------------------------------------------------------------


async def chunk_plan(
    database_url: str,
    merchant_id: uuid.UUID,
    fetch: Callable[[AsyncConnection, uuid.UUID], Any],
) -> list[str]:
    """The plan of the query one chunk runs (the statement the repository sends)."""
    database = Database(Settings(database_url=database_url), pool_size=1)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    try:
        async with database.read() as connection:
            event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
            try:
                await fetch(connection, merchant_id)
            finally:
                event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
            statement, parameters = captured[-1]
            prefix = "EXPLAIN QUERY PLAN " if database.is_sqlite else "EXPLAIN "
            result = await connection.exec_driver_sql(prefix + statement, parameters)
            rows = result.all()
    finally:
        await database.dispose()
    return [str(row[-1]) for row in rows]


def sorts(plan: list[str]) -> bool:
    return any("Sort" in line or "TEMP B-TREE FOR ORDER BY" in line for line in plan)


async def _customers_chunk(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    after = (BASE_TIME, uuid.UUID(int=0))
    return await repository.customer_chunk(connection, merchant_id, after, CHUNK_ROWS)


async def _entries_chunk(connection: AsyncConnection, merchant_id: uuid.UUID) -> Any:
    after = (BASE_TIME, uuid.UUID(int=0))
    return await repository.entry_chunk(connection, merchant_id, None, None, after, CHUNK_ROWS)


async def ensure_entry_index(database_url: str) -> float:
    """Create the ledger's (merchant_id, created_at, id) index if missing; seconds taken."""
    database = Database(Settings(database_url=database_url), pool_size=1)
    started = time.monotonic()
    try:
        async with database.engine.connect() as connection:
            await connection.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS {ENTRY_INDEX} "
                "ON ledger_entries (merchant_id, created_at, id)"
            )
            await connection.exec_driver_sql("ANALYZE ledger_entries")
            await connection.commit()
    finally:
        await database.dispose()
    return time.monotonic() - started


def print_plan(title: str, plan: list[str]) -> None:
    verdict = "SORTS every chunk" if sorts(plan) else "reads the index in order, no sort"
    print(f"  plan of one {title} chunk: {verdict}")
    for line in plan:
        print(f"    {line}")


# --- the exports ---------------------------------------------------------------


def run_export(
    database_url: str, kind: str, merchant_id: uuid.UUID, target: Path
) -> tuple[float, float]:
    """``loyalty export KIND`` in a subprocess under ``/usr/bin/time``: (seconds, peak
    RSS in MiB). ``time`` is small, so the RSS its child inherits at fork is too."""
    environment = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    with tempfile.NamedTemporaryFile(suffix=".time") as timing:
        command = [
            "/usr/bin/time", "-f", "%M", "-o", timing.name,
            sys.executable, "-m", "loyalty", "export", kind,
            "--merchant", str(merchant_id), "--output", str(target),
        ]  # fmt: skip
        started = time.monotonic()
        completed = subprocess.run(command, env=environment, capture_output=True, check=False)
        seconds = time.monotonic() - started
        if completed.returncode != 0:
            raise RuntimeError(f"loyalty export {kind} failed: {completed.stderr[-2000:]!r}")
        peak_kib = int(Path(timing.name).read_text().split()[-1])
    return seconds, peak_kib / 1024


def count_lines(path: Path) -> int:
    """Lines of a CSV file whose cells hold no line breaks (as the seeded data)."""
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def measure(
    name: str, database_url: str, options: argparse.Namespace, directory: Path
) -> list[Measure]:
    print(f"\n== {name}: seeding {options.customers:,} customers, {options.entries:,} entries")
    upgrade_to_head(database_url)
    started = time.monotonic()
    merchant_id, empty_id = asyncio.run(seed(database_url, options.customers, options.entries))
    print(f"  seeded in {time.monotonic() - started:.1f} s")

    print_plan("customers", asyncio.run(chunk_plan(database_url, merchant_id, _customers_chunk)))
    plan = asyncio.run(chunk_plan(database_url, merchant_id, _entries_chunk))
    print_plan("transactions", plan)
    if sorts(plan):
        seconds = asyncio.run(ensure_entry_index(database_url))
        print(f"  created {ENTRY_INDEX} (merchant_id, created_at, id) in {seconds:.1f} s")
        print_plan(
            "transactions", asyncio.run(chunk_plan(database_url, merchant_id, _entries_chunk))
        )

    results = []
    for kind, expected in (("customers", options.customers), ("transactions", options.entries)):
        floor_file = directory / f"{name}-{kind}-empty.csv"
        _, floor = run_export(database_url, kind, empty_id, floor_file)
        target = directory / f"{name}-{kind}.csv"
        seconds, peak = run_export(database_url, kind, merchant_id, target)
        rows = count_lines(target) - 1
        if rows != expected:
            raise RuntimeError(f"{kind}: {rows:,} rows exported, {expected:,} expected")
        result = Measure(name, kind, rows, seconds, target.stat().st_size, peak, floor)
        target.unlink()
        print(
            f"  export {kind:<12} {rows:>10,} rows  {seconds:7.1f} s  "
            f"{result.rows_per_second:>9,.0f} rows/s  {result.file_bytes / 2**20:7.1f} MiB  "
            f"peak RSS {peak:6.1f} MiB (empty merchant: {floor:.1f} MiB)",
            flush=True,
        )
        results.append(result)
    return results


def report(results: list[Measure], options: argparse.Namespace) -> str:
    lines = [
        f"exports of {options.customers:,} customers and {options.entries:,} entries",
        f"{'database':<10} {'export':<13} {'rows':>10} {'seconds':>8} {'rows/s':>9} "
        f"{'MiB out':>8} {'peak RSS MiB':>13} {'empty merchant':>15}",
    ]
    for result in results:
        lines.append(
            f"{result.database:<10} {result.export:<13} {result.rows:>10,} "
            f"{result.seconds:>8.1f} {result.rows_per_second:>9,.0f} "
            f"{result.file_bytes / 2**20:>8.1f} {result.peak_rss_mib:>13.1f} "
            f"{result.floor_rss_mib:>15.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=5_000_000)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Where to create the benchmark's database (dropped at the end).",
    )  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true", help="Keep the databases (their URLs are printed)."
    )
    options = parser.parse_args()
    if options.customers < 1 or options.entries < 0:
        parser.error("--customers must be at least 1 and --entries at least 0")

    results: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="loyalty-exports-") as name:
        directory = Path(name)
        if not options.skip_sqlite:
            sqlite_path = directory / "exports.db"
            if options.keep:
                sqlite_path = Path(tempfile.mkdtemp(prefix="loyalty-exports-kept-")) / "exports.db"
                print(f"SQLite database kept at {sqlite_path}")
            results += measure("sqlite", f"sqlite:///{sqlite_path}", options, directory)
        if not options.skip_postgres:
            admin_url: str = options.postgres_url
            database = f"loyalty_bench_exports_{uuid.uuid4().hex[:10]}"
            base, _, _ = admin_url.rpartition("/")
            database_url = f"{base}/{database}"
            asyncio.run(_admin(admin_url, f'CREATE DATABASE "{database}"'))
            try:
                results += measure("postgres", database_url, options, directory)
            finally:
                if options.keep:
                    print(f"Postgres database kept: {database_url}")
                else:
                    asyncio.run(
                        _admin(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                    )
    print()
    print(report(results, options))


if __name__ == "__main__":
    main()
