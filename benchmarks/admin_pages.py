"""Admin pages at scale: the dashboard and the customer search, p50/p99, with their plans.

    python -m benchmarks.admin_pages [--database-url URL] [--customers 1000000]
                                     [--entries 10000000] [--calls 200] [--workers 1]
                                     [--skip-http] [--drop]

On the database ``benchmarks.seed_scale`` seeds (reused when it was seeded
with the same sizes, else seeded first: minutes at the default sizes), one
merchant with ``--customers`` customers and ``--entries`` ledger entries, it
measures ``--calls`` sequential calls of each (after a warm-up) and prints
p50/p99 in milliseconds against the target (300 ms):

1. SQL (asyncpg, no HTTP): what the dashboard reads from ``daily_rollups``,
   the figures of the last 30, 90 and 365 days (``… WHERE merchant_id = $1
   AND day >= $2 GROUP BY day, metric``) and the all-time totals (``… GROUP
   BY metric``); then, when the application has it, the dashboard service
   (``loyalty.dashboard.service.dashboard``) for each period;
2. the customer search service behind ``GET /api/v1/customers?search=``
   (``customers.listing.list_customers``, one read transaction per call, no
   HTTP) for realistic terms: platform ids, email prefixes (``first.last``),
   the most common first and last names, the rarest last name, the least
   common last name matching more customers than the search reads first
   (``SEARCH_FIRST_MATCHES_MAX``: the list's index is walked), and a term
   matching nothing (each with the number of customers it matches);
3. over HTTP against a ``loyalty serve`` process (``--workers``): the same
   searches through ``GET /api/v1/customers?search=`` with a ``customers:read``
   API key, then, signed in as a staff user (made with ``loyalty users create``),
   the admin dashboard ``GET /admin/?days=30|90|365`` and the admin customer
   search ``GET /admin/customers?q=<term>`` (or ``?search=``: the parameter
   that finds a sampled customer by platform id). If the admin pages are not there
   (no ``/admin/login`` form with a ``_csrf`` field, no session cookie after
   signing in, a page that is not 200), it says so and exits with status 2,
   after reporting the rest.

Then the plans: ``EXPLAIN (ANALYZE, BUFFERS)`` of the dashboard's statements
and of every statement one search sends (the count that picks the plan and
the page), captured from the application's own calls.

The database is kept for the next run unless ``--drop``. The report is
printed and written to ``benchmarks/results/admin-pages-*.txt`` (and
``.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks import seed_scale
from benchmarks.__main__ import RESULTS, server
from benchmarks.customers_list import _matched
from benchmarks.machine import percentile
from loyalty.auth import service as auth_service
from loyalty.customers import list_repository, listing
from loyalty.db.engine import Database, driver_url
from loyalty.settings import Settings

TARGET_MS = 300.0
PERIODS = (30, 90, 365)
SAMPLED_TERMS = 20
NO_MATCH = "Zyxwvutsrq"
# Searches matching more customers than this walk the list's index (newest first).
WALK_THRESHOLD = list_repository.SEARCH_FIRST_MATCHES_MAX["postgresql", False]
# The admin customer list's search parameter: the contract's, then the API's.
SEARCH_PARAMETERS = ("q", "search")

PERIOD_SQL = """SELECT day, metric, sum(plus_minor), sum(minus_minor), sum(count)
FROM daily_rollups WHERE merchant_id = $1 AND day >= $2 GROUP BY day, metric"""
TOTALS_SQL = """SELECT metric, sum(plus_minor), sum(minus_minor)
FROM daily_rollups WHERE merchant_id = $1 GROUP BY metric"""


@dataclass
class Timed:
    section: str
    name: str
    milliseconds: list[float]
    matched: int | None = None
    errors: int = 0

    @property
    def p50(self) -> float:
        return percentile(self.milliseconds, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.milliseconds, 0.99)


@dataclass
class Term:
    """A kind of search and the terms of it the calls rotate over."""

    label: str
    values: list[str]
    matched: int = 0  # customers the first value matches


@dataclass
class Report:
    started_at: str
    options: dict[str, object]
    timings: list[Timed] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The machine's 1-minute load average when each section started and at the end.
    load: dict[str, float] = field(default_factory=dict)

    def note_load(self, label: str) -> None:
        self.load[label] = os.getloadavg()[0]


class AdminPagesMissingError(RuntimeError):
    """The admin UI does not answer as its contract says (not built yet?)."""


# --- timing ------------------------------------------------------------------------------


async def time_calls(
    call: Callable[[int], Awaitable[object]], calls: int, warmup: int
) -> list[float]:
    for number in range(warmup):
        await call(number)
    timings: list[float] = []
    for number in range(calls):
        started = time.perf_counter()
        await call(number)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_requests(
    client: httpx.Client, paths: list[str], calls: int, warmup: int
) -> tuple[list[float], int]:
    """Sequential GETs rotating over ``paths``: the times (ms) and the non-200 count."""
    errors = 0
    timings: list[float] = []
    for number in range(warmup + calls):
        started = time.perf_counter()
        response = client.get(paths[number % len(paths)])
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            errors += 1
        if number >= warmup:
            timings.append(elapsed)
    return timings, errors


# --- the terms ---------------------------------------------------------------------------


async def search_terms(database: Database, merchant_id: uuid.UUID, customers: int) -> list[Term]:
    """Realistic terms drawn from the seeded customers."""
    rng = random.Random(7)
    wanted = [
        str(seed_scale.PLATFORM_ID_BASE + rng.randint(1, customers)) for _ in range(SAMPLED_TERMS)
    ]
    async with database.read() as connection:
        sampled = (
            await connection.execute(
                text(
                    "SELECT external_id, email FROM customers "
                    "WHERE merchant_id = :m AND external_id = ANY(:ids)"
                ),
                {"m": merchant_id, "ids": wanted},
            )
        ).all()
        first = (
            await connection.execute(
                text(
                    "SELECT first_name, count(*) FROM customers WHERE merchant_id = :m "
                    "AND first_name IS NOT NULL GROUP BY first_name ORDER BY 2 DESC, 1 LIMIT 1"
                ),
                {"m": merchant_id},
            )
        ).one()
        last = (
            await connection.execute(
                text(
                    "SELECT (array_agg(last_name ORDER BY n DESC, last_name))[1] AS common, "
                    "(array_agg(last_name ORDER BY n, last_name))[1] AS rare, "
                    "(array_agg(last_name ORDER BY n, last_name) FILTER (WHERE n > :t))[1] "
                    "AS walked FROM ("
                    "SELECT last_name, count(*) AS n FROM customers WHERE merchant_id = :m "
                    "AND last_name IS NOT NULL GROUP BY last_name) AS names"
                ),
                {"m": merchant_id, "t": WALK_THRESHOLD},
            )
        ).one()
    if not sampled:
        raise SystemExit("no customer sampled: is the database seeded?")
    terms = [
        Term("platform id (exact)", [row.external_id for row in sampled]),
        Term(
            "email prefix (first.last)",
            [re.sub(r"[0-9]*@.*$", "", row.email) for row in sampled],
        ),
        Term("most common first name", [first.first_name]),
        Term("most common last name", [last.common]),
        Term("rarest last name", [last.rare]),
        # Just too many to read the matches first: the list's index is walked (the
        # search's costliest case, about 1 customer in 1000 passing).
        Term("last name just over the walk threshold", [last.walked or last.common]),
        Term("no match", [NO_MATCH]),
    ]
    for term in terms:
        term.matched = await _matched(database, merchant_id, term.values[0])
    return terms


# --- SQL and services (no HTTP) ------------------------------------------------------------


def _dashboard_service() -> Callable[..., Awaitable[object]] | None:
    """``loyalty.dashboard.service.dashboard`` when the application has it."""
    try:
        module = importlib.import_module("loyalty.dashboard.service")
    except ImportError:
        return None
    found = getattr(module, "dashboard", None)
    return found if callable(found) else None


async def explain_driver(connection: asyncpg.Connection, sql: str, *args: object) -> list[str]:
    rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
    return [str(row[0]) for row in rows]


async def measure_sql(
    database_url: str, merchant_id: uuid.UUID, report: Report, calls: int, warmup: int
) -> None:
    today = datetime.now(UTC).date()
    connection = await asyncpg.connect(driver_url(database_url))
    try:
        for days in PERIODS:
            since = today - timedelta(days=days - 1)

            async def period(_: int, since: date = since) -> list[Any]:
                return list(await connection.fetch(PERIOD_SQL, merchant_id, since))

            rows = len(await period(0))
            report.timings.append(
                Timed(
                    "SQL",
                    f"dashboard rollups, last {days} days ({rows} rows)",
                    await time_calls(period, calls, warmup),
                )
            )
            plan = await explain_driver(connection, PERIOD_SQL, merchant_id, since)
            _add_plan(report, f"dashboard rollups, last {days} days (day >= {since})", plan)

        async def totals(_: int) -> object:
            return await connection.fetch(TOTALS_SQL, merchant_id)

        report.timings.append(
            Timed("SQL", "dashboard all-time totals", await time_calls(totals, calls, warmup))
        )
        _add_plan(
            report,
            "dashboard all-time totals",
            await explain_driver(connection, TOTALS_SQL, merchant_id),
        )
    finally:
        await connection.close()


def _add_plan(report: Report, title: str, lines: list[str]) -> None:
    report.plans.append("\n".join([f"-- {title}", *(f"   {line}" for line in lines)]))


async def captured(
    database: Database, work: Callable[[AsyncConnection], Awaitable[object]]
) -> list[tuple[str, Any]]:
    """The statements ``work`` sends (and their parameters), in one read transaction."""
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    async with database.read() as connection:
        event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
        try:
            await work(connection)
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
    return statements


async def explain_captured(
    database: Database, title: str, statements: list[tuple[str, Any]], report: Report
) -> None:
    async with database.read() as connection:
        # As list_repository runs the search: custom plans for the values given.
        await connection.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        for number, (statement, parameters) in enumerate(statements, 1):
            if statement.lstrip().upper().startswith("SET"):
                continue
            result = await connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters
            )
            lines = [str(row[0]) for row in result.all()]
            one_line = " ".join(statement.split())
            _add_plan(
                report,
                f"{title}, statement {number}/{len(statements)}: {one_line[:150]}…",
                lines,
            )


async def measure_services(
    database: Database,
    merchant_id: uuid.UUID,
    terms: list[Term],
    report: Report,
    calls: int,
    warmup: int,
) -> None:
    dashboard = _dashboard_service()
    if dashboard is None:
        report.problems.append("loyalty.dashboard.service.dashboard not found: not measured")
    else:
        for days in PERIODS:

            async def figures(_: int, days: int = days) -> object:
                async with database.read() as connection:
                    return await dashboard(connection, merchant_id, days)

            report.timings.append(
                Timed(
                    "service",
                    f"dashboard service, days={days}",
                    await time_calls(figures, calls, warmup),
                )
            )

        async def once(connection: AsyncConnection) -> object:
            return await dashboard(connection, merchant_id, 30)

        statements = await captured(database, once)
        await explain_captured(database, "dashboard service, days=30", statements, report)

    for term in terms:

        async def search(number: int, values: list[str] = term.values) -> object:
            async with database.read() as connection:
                return await listing.list_customers(
                    connection, merchant_id, search=values[number % len(values)]
                )

        report.timings.append(
            Timed(
                "service",
                f"customer search: {term.label}",
                await time_calls(search, calls, warmup),
                matched=term.matched,
            )
        )

        async def first(connection: AsyncConnection, value: str = term.values[0]) -> object:
            return await listing.list_customers(connection, merchant_id, search=value)

        statements = await captured(database, first)
        await explain_captured(
            database, f"customer search {term.values[0]!r} ({term.label})", statements, report
        )


# --- HTTP -------------------------------------------------------------------------------------


async def create_api_key(database: Database, merchant_id: uuid.UUID) -> str:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(
            connection, merchant_id=merchant_id, scopes="customers:read", name="admin_pages"
        )
        return key.token

    return await database.transaction(work)


def create_staff_user(database_url: str, merchant_id: uuid.UUID) -> tuple[str, str]:
    """A new admin user (``loyalty users create``): its email and password."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    password = secrets.token_urlsafe(18)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "loyalty",
            "users",
            "create",
            "--merchant",
            str(merchant_id),
            "--email",
            email,
            "--role",
            "admin",
            "--password-stdin",
            "--json",
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "LOYALTY_DATABASE_URL": database_url},
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"loyalty users create failed: {completed.stderr[-2000:]}")
    return email, password


_CSRF_INPUT = re.compile(r"<input\b[^>]*\bname=[\"']_csrf[\"'][^>]*>", re.IGNORECASE)
_VALUE = re.compile(r"\bvalue=[\"']([^\"']*)[\"']", re.IGNORECASE)


def csrf_token(html: str) -> str | None:
    """The value of the form's hidden ``_csrf`` input."""
    found = _CSRF_INPUT.search(html)
    value = _VALUE.search(found.group(0)) if found else None
    return value.group(1) if value else None


def sign_in(client: httpx.Client, email: str, password: str) -> None:
    page = client.get("/admin/login")
    if page.status_code != 200:
        raise AdminPagesMissingError(f"GET /admin/login answered {page.status_code}")
    token = csrf_token(page.text)
    if token is None:
        raise AdminPagesMissingError("GET /admin/login has no form with a hidden _csrf input")
    answer = client.post(
        "/admin/login", data={"email": email, "password": password, "_csrf": token}
    )
    if answer.status_code != 303:
        raise AdminPagesMissingError(
            f"POST /admin/login answered {answer.status_code}, not 303: {answer.text[:300]!r}"
        )
    if "loyalty_admin" not in client.cookies:
        raise AdminPagesMissingError("POST /admin/login set no loyalty_admin session cookie")


def admin_search_parameter(client: httpx.Client, platform_id: str) -> str:
    """The customer list's search parameter: ``q`` (the admin's contract) or
    ``search`` (the API's), whichever finds the customer with ``platform_id``
    (a page that ignores it lists the newest customers instead)."""
    for parameter in SEARCH_PARAMETERS:
        page = client.get("/admin/customers", params={parameter: platform_id})
        if page.status_code != 200:
            raise AdminPagesMissingError(
                f"GET /admin/customers?{parameter}=… answered {page.status_code}, not 200"
            )
        if platform_id in page.text:
            return parameter
    raise AdminPagesMissingError(
        f"GET /admin/customers finds no customer {platform_id} with "
        + " or ".join(f"?{parameter}=" for parameter in SEARCH_PARAMETERS)
    )


def measure_http(
    database_url: str,
    merchant_id: uuid.UUID,
    token: str,
    terms: list[Term],
    report: Report,
    options: argparse.Namespace,
) -> None:
    calls, warmup = options.calls, options.warmup
    email, password = create_staff_user(database_url, merchant_id)
    with (
        tempfile.TemporaryDirectory(prefix="loyalty-bench-") as directory,
        server(database_url, options.workers, Path(directory)) as base_url,
    ):
        api = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        with api:
            for term in terms:
                paths = [
                    "/api/v1/customers?" + str(httpx.QueryParams({"search": value}))
                    for value in term.values
                ]
                timings, errors = time_requests(api, paths, calls, warmup)
                report.timings.append(
                    Timed(
                        "API (HTTP)",
                        f"GET /api/v1/customers?search=: {term.label}",
                        timings,
                        term.matched,
                        errors,
                    )
                )
        admin = httpx.Client(base_url=base_url, timeout=60, follow_redirects=False)
        with admin:
            try:
                sign_in(admin, email, password)
                pages: list[tuple[str, list[str], int | None]] = [
                    (f"GET /admin/?days={days}", [f"/admin/?days={days}"], None) for days in PERIODS
                ]
                parameter = admin_search_parameter(admin, terms[0].values[0])
                pages += [
                    (
                        f"GET /admin/customers?{parameter}=: {term.label}",
                        [
                            "/admin/customers?" + str(httpx.QueryParams({parameter: value}))
                            for value in term.values
                        ],
                        term.matched,
                    )
                    for term in terms
                ]
                for name, paths, matched in pages:
                    first = admin.get(paths[0])
                    if first.status_code != 200:
                        raise AdminPagesMissingError(
                            f"GET {paths[0]} answered {first.status_code}, not 200"
                        )
                    timings, errors = time_requests(admin, paths, calls, warmup)
                    report.timings.append(Timed("admin (HTTP)", name, timings, matched, errors))
            except AdminPagesMissingError as error:
                report.problems.append(
                    f"admin pages not measured: {error} (is the admin UI there yet?)"
                )


# --- the run -----------------------------------------------------------------------------------


def render(report: Report) -> str:
    lines = [
        f"admin pages benchmark — {report.started_at} — "
        + ", ".join(f"{key}={value}" for key, value in report.options.items()),
        "",
        f"| {'section':<12} | {'measured':<58} | {'p50 ms':>8} | {'p99 ms':>8} | "
        f"{'matched':>8} | {'errors':>6} | {'<= ' + str(int(TARGET_MS)) + ' ms':>9} |",
        f"|{'-' * 14}|{'-' * 60}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 11}|",
    ]
    for timed in report.timings:
        matched = "" if timed.matched is None else f"{timed.matched:,}"
        verdict = "yes" if timed.p99 <= TARGET_MS and not timed.errors else "NO"
        lines.append(
            f"| {timed.section:<12} | {timed.name[:58]:<58} | {timed.p50:>8.2f} | "
            f"{timed.p99:>8.2f} | {matched:>8} | {timed.errors:>6} | {verdict:>9} |"
        )
    lines += ["", *(f"! {problem}" for problem in report.problems)]
    lines += [
        "",
        "1-minute load average (other processes share the cores): "
        + ", ".join(f"{label} {load:.2f}" for label, load in report.load.items()),
    ]
    lines += ["", "plans (EXPLAIN (ANALYZE, BUFFERS)):", "", *report.plans]
    return "\n".join(lines)


async def run_async(options: argparse.Namespace, report: Report) -> None:
    info = await seed_scale.ensure_seeded(
        options.database_url,
        options.customers,
        options.entries,
        replace=options.replace,
        parallel=options.parallel,
        verify=not options.no_verify,
    )
    seeded = datetime.fromisoformat(info.seeded_at)
    if datetime.now(UTC) - seeded > timedelta(days=7):
        report.problems.append(
            f"the data was seeded at {info.seeded_at}: the recent days hold fewer entries"
        )
    merchant_id = uuid.UUID(info.merchant_id)
    database = Database(Settings(database_url=options.database_url), pool_size=2)
    try:
        print("drawing search terms…")
        terms = await search_terms(database, merchant_id, info.customers)
        for term in terms:
            shown = ", ".join(term.values[:3]) + ("…" if len(term.values) > 3 else "")
            print(f"  {term.label}: {shown} ({term.matched:,} match the first)")
        print("measuring the dashboard's SQL…")
        report.note_load("SQL")
        await measure_sql(options.database_url, merchant_id, report, options.calls, options.warmup)
        print("measuring the services (no HTTP)…")
        report.note_load("services")
        await measure_services(database, merchant_id, terms, report, options.calls, options.warmup)
        token = await create_api_key(database, merchant_id)
    finally:
        await database.dispose()
    if not options.skip_http:
        print(f"measuring over HTTP ({options.workers} worker(s))…")
        report.note_load("HTTP")
        await asyncio.to_thread(
            measure_http, options.database_url, merchant_id, token, terms, report, options
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.admin_pages", description=(__doc__ or "").split("\n")[0]
    )
    seed_scale.add_arguments(parser)
    parser.add_argument("--calls", type=int, default=200, help="measured calls per query/page")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured calls before")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--skip-http", action="store_true", help="SQL and services only")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    options = parser.parse_args()
    report = Report(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options={
            "customers": options.customers,
            "entries": options.entries,
            "calls": options.calls,
            "workers": options.workers,
        },
    )
    try:
        asyncio.run(run_async(options, report))
    finally:
        if options.drop:
            asyncio.run(seed_scale.drop_database(options.database_url))
    report.note_load("end")
    text_report = render(report)
    print()
    print(text_report)
    RESULTS.mkdir(exist_ok=True)
    stamp = report.started_at.replace(":", "")
    (RESULTS / f"admin-pages-{stamp}.txt").write_text(text_report + "\n")
    figures = [
        {**asdict(timed), "p50": timed.p50, "p99": timed.p99, "milliseconds": None}
        for timed in report.timings
    ]
    (RESULTS / f"admin-pages-{stamp}.json").write_text(
        json.dumps({**asdict(report), "timings": figures}, indent=2, default=str)
    )
    if any(problem.startswith("admin pages not measured") for problem in report.problems):
        print(
            "\nThe admin pages could not be measured (see above); the other figures stand.",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
