"""Customer list and search benchmark: the service behind GET /api/v1/customers.

    python -m benchmarks.customers_list [--customers 1000000] [--calls 300]
                                        [--skip-sqlite] [--skip-postgres]

Seeds one merchant (made by ``merchants.service.create_merchant``) with
``--customers`` customers and their balances, set-based (Postgres:
``INSERT … SELECT … generate_series``; SQLite: a recursive CTE): names from
small pools (at a million customers a 3-letter name prefix or a 4-letter
email prefix selects a few thousand, a 6-letter email prefix tens to
hundreds), emails made of them, balances with many ties, statuses mostly
active (1% erased). Postgres is then
``VACUUM ANALYZE``d (what autovacuum does after a bulk load); SQLite is left
without statistics, as the application leaves it.

Then, per database, it calls ``customers.listing.list_customers`` (the
service, one read transaction per call, no HTTP) ``--calls`` times per query
and prints p50/p99 in milliseconds: the default first page, a page deep into
the list (by cursor), the balance sorts, a status filter, and the search by
platform id, email prefix (4 and 6 characters), last-name prefix, and one
letter. Search terms are drawn from random customers (so frequent names come
up as often as they are frequent); the table shows how many customers the
terms matched (median). Last, the plans of the default list and of two searches:
``EXPLAIN (ANALYZE, BUFFERS)`` on Postgres, ``EXPLAIN QUERY PLAN`` on SQLite.

The Postgres database (``loyalty_bench_customers_*``, created through
``--postgres-url``) and the SQLite file are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers import list_repository, listing
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.merchants import service as merchants_service
from loyalty.settings import Settings

_FIRST_NAMES = """
Aaron Abigail Adam Adrian Aisha Alan Albert Alexander Alice Amanda Amelia Amir Andrea Andrew
Angela Anna Anthony Arthur Ava Barbara Benjamin Bernard Beatrice Bianca Brandon Brian Bruno
Caleb Camille Carla Carlos Caroline Catherine Charles Charlotte Chloe Christopher Claire
Clara Daniel David Deborah Dennis Diana Diego Dominic Donna Dorothy Dylan Edward Elena Elias
Elizabeth Ella Emily Emma Eric Ethan Eva Felix Fiona Francesca Frank Gabriel Gemma George
Grace Gregory Hannah Harold Harry Helen Henry Hugo Ian Isaac Isabel Ivan Jack Jacob James
Jane Jasmine Jason Jennifer Jessica Joan John Jonathan Joseph Joshua Julia Julian Karen
Katherine Kevin Laura Lauren Leo Liam Lily Linda Lisa Louis Lucas Lucy Luis Margaret Maria
Mark Martha Martin Mary Matthew Maya Michael Michelle Mohammed Nancy Natalie Nathan Nicholas
Nina Noah Nora Oliver Olivia Oscar Patricia Patrick Paul Peter Philip Rachel Raymond Rebecca
Richard Robert Rose Ruth Ryan Samuel Sandra Sarah Scott Sebastian Sofia Sophie Stephen
Susan Thomas Timothy Victoria Vincent William Yusuf Zoe
"""
_LAST_NAMES = """
Abbott Acosta Adams Aguilar Alexander Allen Alvarez Anderson Andrews Armstrong Arnold Austin
Bailey Baker Banks Barker Barnes Bauer Becker Bell Bennett Berger Bishop Black Blake Bowman
Boyd Bradley Brooks Brown Bryant Burke Burns Butler Caldwell Campbell Cardenas Carlson
Carpenter Carroll Carter Castillo Chambers Chan Chapman Chavez Clark Cohen Cole Coleman
Collins Cook Cooper Cruz Cunningham Curtis Daniels Davidson Davis Dawson Dean Delgado Diaz
Dixon Douglas Duncan Dunn Edwards Elliott Ellis Evans Ferguson Fernandez Fischer Fisher
Fleming Flores Ford Foster Fox Francis Franklin Freeman Fuller Garcia Gardner Garrett
Gibson Gilbert Gomez Gonzalez Gordon Graham Grant Gray Green Gregory Griffin Gutierrez Hall
Hamilton Hansen Harper Harris Hart Harvey Hawkins Hayes Henderson Hernandez Hicks Hill
Hoffman Holland Holmes Howard Hudson Hughes Hunt Hunter Jackson James Jenkins Jensen Johnson
Jones Jordan Kelly Kennedy Khan Kim King Klein Knight Koch Kowalski Kramer Lambert Lane Larsen
Lawrence Lee Lewis Lindqvist Little Lopez Lucas Lynch Marshall Martin Martinez Mason Matthews
Meyer Miller Mills Mitchell Moore Morales Morgan Morris Murphy Murray Myers Nelson Newman
Nguyen Nichols Novak Obrien Olsen Olson Ortiz Owens Palmer Parker Patel Payne Pearson Perez
Perry Peters Peterson Phillips Pierce Porter Powell Price Quinn Ramirez Ramos Reed Reyes
Reynolds Rice Richards Richardson Riley Rivera Roberts Robertson Robinson Rodriguez Rogers
Romero Rose Ross Russell Ryan Sanchez Sanders Santos Schmidt Schneider Scott Shaw Silva
Simmons Simpson Smith Snyder Spencer Stephens Stevens Stewart Stone Sullivan Taylor Thomas
Thompson Torres Tucker Turner Vargas Vasquez Wagner Walker Wallace Walsh Ward Warren Watson
Weaver Webb Weber Wells West Wheeler White Williams Willis Wilson Wolf Wood Wright Young
Zimmerman
"""
FIRST_NAMES = _FIRST_NAMES.split()
LAST_NAMES = _LAST_NAMES.split()
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me"]
# Email local parts, by a customer's number: first.last, flast, firstlast, last.first.
EMAIL_FORMATS = 4
# Statuses by a customer's number modulo 100.
STATUS_CASES = """
CASE WHEN {r} < 90 THEN 'active' WHEN {r} < 95 THEN 'inactive' WHEN {r} < 98 THEN 'excluded'
     WHEN {r} < 99 THEN 'excluded_by_customer' ELSE 'erased' END"""
SECONDS_SPAN = 3 * 365 * 86400  # created over three years


@dataclass
class Measured:
    name: str
    milliseconds: list[float]
    matched: list[int] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return _percentile(self.milliseconds, 0.50)

    @property
    def p99(self) -> float:
        return _percentile(self.milliseconds, 0.99)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _email_sql(first: str, last: str, number: str, domain: str, concat: str) -> str:
    """The email of customer ``number`` (lower case), in one of EMAIL_FORMATS shapes."""
    f, la = f"lower({first})", f"lower({last})"
    shapes = [
        f"{f} || '.' || {la}",
        f"substr({f}, 1, 1) || {la}",
        f"{f} || {la}",
        f"{la} || '.' || {f}",
    ]
    cases = " ".join(
        f"WHEN {index} THEN {shape}" for index, shape in enumerate(shapes[:EMAIL_FORMATS])
    )
    return (
        f"(CASE ({number}) % {EMAIL_FORMATS} {cases} END) || ({number}){concat} || '@' || {domain}"
    )


async def _seed_postgres(driver: asyncpg.Connection, merchant_id: uuid.UUID, count: int) -> None:
    status = STATUS_CASES.format(r="(g * 37 % 100)")
    await driver.execute(
        f"""
        INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
                               first_name_search, last_name_search, status, created_at,
                               updated_at)
        SELECT $1, id, CASE WHEN status = 'erased' THEN NULL ELSE (7000000000000 + g)::text END,
               CASE WHEN status = 'erased' THEN NULL ELSE
                    {_email_sql("f", "l", "g", "d", "::text")} END,
               CASE WHEN status = 'erased' THEN NULL ELSE f END,
               CASE WHEN status = 'erased' THEN NULL ELSE l END,
               CASE WHEN status = 'erased' THEN NULL ELSE lower(f) END,
               CASE WHEN status = 'erased' THEN NULL ELSE lower(l) END,
               status, created_at, created_at
        FROM (
            SELECT g, status, created_at,
                   -- a UUIDv7 as the application makes them: milliseconds, then random bits
                   (lpad(to_hex((extract(epoch FROM created_at) * 1000)::bigint), 12, '0')
                    || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid AS id,
                   ($2::text[])[1 + (hashint4(g) & 2147483647) % cardinality($2::text[])]
                       AS f,
                   ($3::text[])[1 + (hashint4(-g) & 2147483647) % cardinality($3::text[])]
                       AS l,
                   ($4::text[])[1 + g % cardinality($4::text[])] AS d
            FROM (
                SELECT g, {status} AS status, md5(g::text) AS h,
                       now() - make_interval(secs => ($5 - g)::float8 * $6 / $5) AS created_at
                FROM generate_series(1, $5) AS g
            ) AS numbered
        ) AS named
        """,
        merchant_id,
        FIRST_NAMES,
        LAST_NAMES,
        DOMAINS,
        count,
        float(SECONDS_SPAN),
    )
    await driver.execute(
        """
        INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
                                       lifetime_points_minor, updated_at)
        SELECT merchant_id, id, balance, balance, created_at
        FROM (
            SELECT merchant_id, id, created_at,
                   CASE WHEN status = 'erased' OR hashint8(g) % 5 = 0 THEN 0
                        ELSE (abs(hashint8(g)) % 2000) * 100 END AS balance
            FROM (SELECT *, row_number() OVER () AS g FROM customers
                  WHERE merchant_id = $1) AS c
        ) AS b
        """,
        merchant_id,
    )


async def _seed_sqlite(driver: Any, merchant_id: uuid.UUID, count: int) -> None:
    merchant = merchant_id.hex
    # A large cache while the indexes grow; the application's default again after.
    await driver.execute("PRAGMA cache_size = -262144")
    for table, names in (("bench_first", FIRST_NAMES), ("bench_last", LAST_NAMES)):
        await driver.execute(f"CREATE TEMP TABLE {table} (i INTEGER PRIMARY KEY, name TEXT)")
        await driver.executemany(f"INSERT INTO {table} VALUES (?, ?)", list(enumerate(names)))
    await driver.execute("CREATE TEMP TABLE bench_domain (i INTEGER PRIMARY KEY, name TEXT)")
    await driver.executemany("INSERT INTO bench_domain VALUES (?, ?)", list(enumerate(DOMAINS)))
    status = STATUS_CASES.format(r="(g * 37 % 100)")
    now = time.time()
    email = _email_sql("f", "l", "g", "d", "")
    await driver.execute(
        f"""
        INSERT INTO customers (merchant_id, id, external_id, email, first_name, last_name,
                               first_name_search, last_name_search, status, created_at,
                               updated_at)
        WITH RECURSIVE numbers(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM numbers WHERE g < ?),
        numbered AS (
            SELECT g, {status} AS status,
                   ? - (? - g) * ? / ? AS epoch,
                   lower(hex(randomblob(8))) AS h,
                   -- (g in each: evaluated for every row, not once)
                   (SELECT name FROM bench_first
                    WHERE i = (abs(random()) + 0 * g) % {len(FIRST_NAMES)}) AS f,
                   (SELECT name FROM bench_last
                    WHERE i = (abs(random()) + 0 * g) % {len(LAST_NAMES)}) AS l,
                   (SELECT name FROM bench_domain WHERE i = g % {len(DOMAINS)}) AS d
            FROM numbers
        )
        SELECT ?, printf('%012x', CAST(epoch * 1000 AS INTEGER)) || '7' || substr(h, 1, 3)
                  || '8' || substr(h, 4, 11) || substr(lower(hex(randomblob(2))), 1, 4),
               CASE WHEN status = 'erased' THEN NULL ELSE CAST(7000000000000 + g AS TEXT) END,
               CASE WHEN status = 'erased' THEN NULL ELSE {email} END,
               CASE WHEN status = 'erased' THEN NULL ELSE f END,
               CASE WHEN status = 'erased' THEN NULL ELSE l END,
               CASE WHEN status = 'erased' THEN NULL ELSE lower(f) END,
               CASE WHEN status = 'erased' THEN NULL ELSE lower(l) END,
               status,
               strftime('%Y-%m-%d %H:%M:%S', epoch, 'unixepoch')
                   || printf('.%06d', CAST((epoch - CAST(epoch AS INTEGER)) * 1000000 AS INTEGER)),
               strftime('%Y-%m-%d %H:%M:%S', epoch, 'unixepoch') || '.000000'
        FROM numbered
        """,
        (count, now, count, SECONDS_SPAN, count, merchant),
    )
    await driver.execute(
        """
        INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor,
                                       lifetime_points_minor, updated_at)
        SELECT merchant_id, id, balance, balance, created_at
        FROM (
            SELECT merchant_id, id, created_at,
                   CASE WHEN status = 'erased' OR abs(random()) % 5 = 0 THEN 0
                        ELSE (abs(random()) % 2000) * 100 END AS balance
            FROM customers WHERE merchant_id = ?
        )
        """,
        (merchant,),
    )
    await driver.execute("PRAGMA cache_size = -2000")


async def seed(database: Database, count: int) -> uuid.UUID:
    """One merchant with ``count`` customers and their balances."""

    async def work(connection: AsyncConnection) -> uuid.UUID:
        merchant = await merchants_service.create_merchant(connection, "Benchmark shop")
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        if database.is_sqlite:
            await _seed_sqlite(driver, merchant.id, count)
        else:
            await _seed_postgres(driver, merchant.id, count)
        return merchant.id

    started = time.perf_counter()
    merchant_id = await database.transaction(work)
    if not database.is_sqlite:
        async with database.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE customers"))
            await autocommit.execute(text("VACUUM ANALYZE customer_balances"))
    print(f"  seeded {count:,} customers in {time.perf_counter() - started:.0f} s")
    return merchant_id


@dataclass
class Samples:
    """Search terms and cursors drawn from the seeded customers."""

    platform_ids: list[str]
    email_prefixes: list[str]
    long_email_prefixes: list[str]
    last_name_prefixes: list[str]
    deep_created: str
    deep_balance: str


async def sample(database: Database, merchant_id: uuid.UUID, count: int, size: int) -> Samples:
    rng = random.Random(7)
    merchant = merchant_id.hex if database.is_sqlite else merchant_id
    async with database.read() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT external_id, email, last_name FROM customers "
                    "WHERE merchant_id = :m AND status <> 'erased' AND external_id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {
                    "m": merchant,
                    "ids": [str(7000000000000 + rng.randint(1, count)) for _ in range(size)],
                },
            )
        ).all()
        middle = count // 2
        deep: dict[str, str] = {}
        for sort in ("-created_at", "-points_balance"):
            # One walk of the list to the middle (the measured calls start there).
            order = "c.created_at DESC, c.id DESC"
            if sort == "-points_balance":
                order = "b.points_balance_minor DESC, b.customer_id DESC"
            row = (
                await connection.execute(
                    text(
                        "SELECT c.id, c.created_at, b.points_balance_minor FROM customers c "
                        "JOIN customer_balances b ON b.merchant_id = c.merchant_id "
                        "AND b.customer_id = c.id WHERE c.merchant_id = :m "
                        f"AND c.status <> 'erased' ORDER BY {order} LIMIT 1 OFFSET :o"
                    ),
                    {"m": merchant, "o": middle},
                )
            ).one()
            deep[sort] = listing.encode_cursor(_Row(row), sort)
    assert rows, "no customer sampled"
    return Samples(
        platform_ids=[row.external_id for row in rows],
        email_prefixes=[row.email[:4] for row in rows],
        long_email_prefixes=[row.email[:6] for row in rows],
        last_name_prefixes=[row.last_name[:3] for row in rows],
        deep_created=deep["-created_at"],
        deep_balance=deep["-points_balance"],
    )


class _Row:
    """A sampled row as ``listing.encode_cursor`` reads it."""

    def __init__(self, row: Any) -> None:
        self.id = uuid.UUID(str(row.id))
        created_at = row.created_at
        if isinstance(created_at, str):  # SQLite text
            created_at = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        self.created_at = created_at
        self.points_balance_minor = row.points_balance_minor


async def _matched(database: Database, merchant_id: uuid.UUID, term: str) -> int:
    """How many customers a search term matches (every page), counted by the search's plan."""
    statement = list_repository.page_statement(
        "postgresql" if not database.is_sqlite else "sqlite",
        merchant_id,
        search=listing.parse_search(term),
        status=None,
        tier_id=None,
        order=list_repository.Order(by_balance=False, descending=True),
        after=None,
        limit=10_000_000,
        search_first=True,
    )
    async with database.read() as connection:
        count = select(func.count()).select_from(statement.subquery())
        return int((await connection.execute(count)).scalar_one())


async def measure(
    database: Database,
    merchant_id: uuid.UUID,
    samples: Samples,
    calls: int,
) -> list[Measured]:
    async def call(**params: Any) -> None:
        async with database.read() as connection:
            page = await listing.list_customers(connection, merchant_id, **params)
        assert page.data or params.get("search"), params

    size = len(samples.long_email_prefixes)

    def rotating(name: str, terms: list[str]) -> tuple[str, Callable[[int], dict[str, Any]]]:
        return name, lambda number: {"search": terms[number % len(terms)]}

    queries: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
        ("default (newest first), first page", lambda _: {}),
        ("default, deep page (cursor at the middle)", lambda _: {"cursor": samples.deep_created}),
        ("sort=created_at, first page", lambda _: {"sort": "created_at"}),
        ("sort=-points_balance, first page", lambda _: {"sort": "-points_balance"}),
        (
            "sort=-points_balance, deep page",
            lambda _: {"sort": "-points_balance", "cursor": samples.deep_balance},
        ),
        ("sort=points_balance, first page", lambda _: {"sort": "points_balance"}),
        ("status=excluded_by_customer (1%)", lambda _: {"status": "excluded_by_customer"}),
        rotating("search: platform id (exact)", samples.platform_ids),
        rotating("search: email prefix (4 chars)", samples.email_prefixes),
        rotating("search: email prefix (6 chars)", samples.long_email_prefixes),
        rotating("search: last-name prefix (3 chars)", samples.last_name_prefixes),
        (
            "search: email prefix (6 chars), -points_balance",
            lambda n: {"search": samples.long_email_prefixes[n % size], "sort": "-points_balance"},
        ),
        rotating("search: one letter (broad)", ["a", "m", "j", "s", "c"]),
    ]
    results: list[Measured] = []
    for name, params in queries:
        for number in range(min(20, calls)):  # warm-up
            await call(**params(number))
        timings: list[float] = []
        for number in range(calls):
            started = time.perf_counter()
            await call(**params(number))
            timings.append((time.perf_counter() - started) * 1000)
        measured = Measured(name, timings)
        if name.startswith("search"):
            terms = sorted({params(number)["search"] for number in range(calls)})[:20]
            measured.matched = [await _matched(database, merchant_id, term) for term in terms]
        results.append(measured)
    return results


async def explain(database: Database, merchant_id: uuid.UUID, samples: Samples) -> str:
    """The plans of the default list's first page and of two searches: a
    last-name prefix and a platform id (each the way the repository chooses
    for it)."""
    out: list[str] = []
    cases = {
        "default list, first page": None,
        f"search {samples.last_name_prefixes[0]!r}": samples.last_name_prefixes[0],
        f"search {samples.platform_ids[0]!r}": samples.platform_ids[0],
    }
    newest_first = list_repository.Order(by_balance=False, descending=True)
    async with database.read() as connection:
        dialect = connection.dialect.name
        for title, term in cases.items():
            search = listing.parse_search(term)
            search_first = False
            if search is not None:
                search_first = await list_repository.search_is_sparse(
                    connection, merchant_id, search, newest_first
                )
            statement = list_repository.page_statement(
                dialect,
                merchant_id,
                search=search,
                status=None,
                tier_id=None,
                order=newest_first,
                after=None,
                limit=21,
                search_first=search_first,
            )
            sql = str(
                statement.compile(
                    dialect=connection.dialect, compile_kwargs={"literal_binds": True}
                )
            )
            prefix = "EXPLAIN QUERY PLAN" if database.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS)"
            rows = (await connection.exec_driver_sql(f"{prefix} {sql}")).all()
            out.append(f"-- {title}" + (" (matches read first)" if search_first else ""))
            out.extend(f"   {row[-1]}" for row in rows)
    return "\n".join(out)


def report(title: str, results: list[Measured]) -> None:
    print(f"\n{title}")
    print(f"  {'query':<45} {'p50 ms':>8} {'p99 ms':>8}  matched (median)")
    for measured in results:
        matched = f"{statistics.median(measured.matched):,.0f}" if measured.matched else ""
        print(f"  {measured.name:<45} {measured.p50:>8.2f} {measured.p99:>8.2f}  {matched}")


async def run(database_url: str, title: str, options: argparse.Namespace) -> None:
    print(f"\n{title}: migrating and seeding…")
    await upgrade_to_head_async(database_url)
    database = Database(Settings(database_url=database_url), pool_size=2)
    try:
        merchant_id = await seed(database, options.customers)
        samples = await sample(database, merchant_id, options.customers, options.calls)
        results = await measure(database, merchant_id, samples, options.calls)
        report(f"{title}, {options.customers:,} customers, {options.calls} calls each", results)
        print()
        print(await explain(database, merchant_id, samples))
    finally:
        await database.dispose()


async def _admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def main_async(options: argparse.Namespace) -> None:
    if not options.skip_postgres:
        name = f"loyalty_bench_customers_{uuid.uuid4().hex[:10]}"
        base, _, _ = options.postgres_url.rpartition("/")
        await _admin(options.postgres_url, f'CREATE DATABASE "{name}"')
        try:
            await run(f"{base}/{name}", "Postgres", options)
        finally:
            await _admin(options.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if not options.skip_sqlite:
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as directory:
            await run(f"sqlite:///{Path(directory) / 'customers.db'}", "SQLite", options)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.customers_list", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300, help="calls per query")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "LOYALTY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database to connect to for creating (and dropping) the benchmark database",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
