"""Import benchmark: ``loyalty customers import`` on a large file, SQLite and Postgres.

    python -m benchmarks.imports [--rows 1000000] [--skip-sqlite] [--skip-postgres]

For each database, a fresh one (a temporary SQLite file; a new Postgres
database, dropped at the end): one merchant, ``--rows / 2`` existing customers
inserted by set-based SQL (with their balances), then the CLI run as an
operator runs it, in its own process:

1. ``--dry-run``: the whole file validated, nothing written;
2. the import: validated again, then applied (every row a points credit
   through the ledger, half of them for the existing customers, half enrolling
   new ones; every fifth row with an email, every third with names).

Each run is timed (wall clock, from start to exit); its peak resident memory
comes from ``/usr/bin/time`` (else from polling ``/proc``), its CPU time
(user + system) from ``wait4``. The import is then checked: every row
applied, one ledger entry per row.
``--py-spy PREFIX`` records the import under py-spy into
``PREFIX-<database>.svg`` (``--py-spy-format raw``: collapsed stacks as text;
figures measured that way include py-spy's overhead).

Targets (IMPORT.md): at most 60 s per million rows (16,667 rows/s) and a peak
RSS of at most 200 MB, whatever the file's size. Prints a table and writes it,
with the figures as JSON, to ``benchmarks/results/imports-*``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, Uuid, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.__main__ import RESULTS, _admin
from loyalty.db.engine import Database
from loyalty.db.types import UTCDateTime, utc_now
from loyalty.points import MINOR_PER_POINT
from loyalty.settings import Settings

HEADER = "customer_id,email,first_name,last_name,points,description\n"
SECONDS_PER_MILLION_MAX = 60.0
RSS_MB_MAX = 200.0
EXISTING_PREFIX = "c"
NEW_PREFIX = "n"
FIRST_NAMES = ("Ada", "Grace", "Alan", "Édith", "Linus", "Margaret", "Ken", "Barbara")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Piaf", "Torvalds", "Hamilton", "Thompson")


# --- data ------------------------------------------------------------------------------


async def seed_customers(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    count: int,
    *,
    prefix: str = EXISTING_PREFIX,
) -> None:
    """Insert customers ``<prefix>1`` … ``<prefix><count>`` with zero balances, in
    two set-based statements (a numbers series on either database)."""
    if count <= 0:
        return
    if connection.dialect.name == "postgresql":
        numbers = "SELECT n FROM generate_series(1, :count) AS n"
        new_id = "gen_random_uuid()"
    else:
        numbers = (
            "WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series "
            "WHERE n < :count) SELECT n FROM series"
        )
        # SQLite keeps UUIDs as 32 hex digits.
        new_id = "lower(hex(randomblob(16)))"
    typed = (
        bindparam("merchant_id", type_=Uuid()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("prefix", type_=String()),
    )
    values = {"merchant_id": merchant_id, "now": utc_now(), "prefix": prefix, "count": count}
    await connection.execute(
        text(
            "INSERT INTO customers (merchant_id, id, external_id, status, created_at, "
            f"updated_at) SELECT :merchant_id, {new_id}, "
            "CAST(:prefix AS VARCHAR) || CAST(numbers.n AS VARCHAR), 'active', :now, :now "
            f"FROM ({numbers}) AS numbers"
        ).bindparams(*typed),
        values,
    )
    await connection.execute(
        text(
            "INSERT INTO customer_balances (merchant_id, customer_id, updated_at) "
            "SELECT merchant_id, id, :now FROM customers c WHERE c.merchant_id = :merchant_id "
            "AND NOT EXISTS (SELECT 1 FROM customer_balances b "
            "WHERE b.merchant_id = c.merchant_id AND b.customer_id = c.id)"
        ).bindparams(*typed[:2]),
        values,
    )


def write_file(path: Path, rows: int, existing: int, seed: int = 1) -> int:
    """``rows`` rows, every one a credit: the ``existing`` customers once each, then
    new customers, in a shuffled order; the sum of the points."""
    rng = random.Random(seed)
    new = rows - existing
    order = [EXISTING_PREFIX + str(n) for n in range(1, existing + 1)]
    order += [NEW_PREFIX + str(n) for n in range(1, new + 1)]
    rng.shuffle(order)
    total = 0
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write(HEADER)
        lines: list[str] = []
        for number, customer_id in enumerate(order):
            points = rng.randint(1, 1000)
            total += points
            email = f"{customer_id}@example.com" if number % 5 == 0 else ""
            first = last = ""
            if number % 3 == 0:
                first = rng.choice(FIRST_NAMES)
                last = rng.choice(LAST_NAMES)
            description = "Balance from the previous programme" if number % 2 else ""
            lines.append(f"{customer_id},{email},{first},{last},{points},{description}\n")
            if len(lines) == 10_000:
                file.writelines(lines)
                lines.clear()
        file.writelines(lines)
    return total


# --- measuring -------------------------------------------------------------------------


@dataclass
class Measure:
    database: str
    step: str
    rows: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")


def _environment(database_url: str) -> dict[str, str]:
    return {**os.environ, "LOYALTY_DATABASE_URL": database_url, "LOYALTY_LOG_LEVEL": "warning"}


def _cli_json(database_url: str, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "loyalty", *args, "--json"],
        env=_environment(database_url),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"loyalty {' '.join(args)} failed: {completed.stderr[-2000:]}")
    parsed: dict[str, Any] = json.loads(completed.stdout)
    return parsed


def run_import(
    database_url: str,
    merchant_id: str,
    path: Path,
    *,
    label: str,
    step: str,
    rows: int,
    dry_run: bool,
    py_spy: str | None = None,
    py_spy_format: str = "flamegraph",
) -> Measure:
    """One CLI run in its own process: wall time, peak RSS and its JSON summary."""
    command = [
        sys.executable, "-m", "loyalty", "customers", "import", str(path),
        "--merchant", merchant_id, "--json",
    ]  # fmt: skip
    if dry_run:
        command.append("--dry-run")
    if py_spy is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        suffix = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[py_spy_format]
        output = f"{py_spy}-{label}.{suffix}"
        command = [spy, "record", "--format", py_spy_format, "-o", output, "--", *command]
    gnu_time = Path("/usr/bin/time")
    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
        tempfile.NamedTemporaryFile(prefix="loyalty-import-rss-") as report,
    ):
        if gnu_time.exists():
            # %M: the command's peak RSS in KiB (its own memory only: see _peak_kib).
            command = [str(gnu_time), "-f", "%M", "-o", report.name, *command]
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=_environment(database_url), stdout=stdout, stderr=stderr
        )
        peak_kib, status, usage = _wait(process.pid)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if gnu_time.exists():
            peak_kib = int(Path(report.name).read_text().split()[-1])
        stdout.seek(0)
        stderr.seek(0)
        out = stdout.read().decode(errors="replace")
        err = stderr.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"the import failed ({process.returncode}): {out[-2000:]}{err[-2000:]}")
    # The summary is the one JSON line (py-spy, when used, prints its own lines).
    line = next(text for text in reversed(out.splitlines()) if text.startswith("{"))
    summary: dict[str, Any] = json.loads(line)
    return Measure(
        label,
        step,
        rows,
        seconds,
        peak_kib / 1024,
        usage.ru_utime + usage.ru_stime,  # with its children's (time, py-spy)
        summary,
    )


def _wait(pid: int) -> tuple[int, int, Any]:
    """Wait for the process; its peak RSS (KiB), exit status and resource usage.

    The peak is polled from ``/proc/PID/status`` (``VmHWM``), not taken from
    ``wait4``'s ``ru_maxrss``: a child spawned by this (large) process starts
    with this process's own peak as its ``ru_maxrss`` (vfork, then exec), so
    ``ru_maxrss`` is at least the harness's size. ``/usr/bin/time`` (a small
    process) gives the exact figure when present."""
    peak = 0
    status_file = Path(f"/proc/{pid}/status")
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited:
            return peak, status, usage
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


async def _prepare(database_url: str, merchant_id: str, existing: int) -> None:
    database = Database(Settings(database_url=database_url), pool_size=1)
    try:

        async def work(connection: AsyncConnection) -> None:
            await seed_customers(connection, uuid.UUID(merchant_id), existing)

        await database.transaction(work)
        async with database.engine.connect() as connection:
            # The statistics a database in use has (autovacuum may not have run yet).
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    finally:
        await database.dispose()


async def _count(database_url: str, merchant_id: str) -> tuple[int, int, int]:
    """Customers, ledger entries and the sum of every balance (minor units)."""
    database = Database(Settings(database_url=database_url), pool_size=1)
    merchant = bindparam("merchant_id", type_=Uuid())
    try:
        async with database.read() as connection:
            customers = await connection.scalar(
                text("SELECT count(*) FROM customers WHERE merchant_id = :merchant_id").bindparams(
                    merchant
                ),
                {"merchant_id": uuid.UUID(merchant_id)},
            )
            entries = await connection.scalar(
                text(
                    "SELECT count(*) FROM ledger_entries WHERE merchant_id = :merchant_id"
                ).bindparams(merchant),
                {"merchant_id": uuid.UUID(merchant_id)},
            )
            balance = await connection.scalar(
                text(
                    "SELECT coalesce(sum(points_balance_minor), 0) FROM customer_balances "
                    "WHERE merchant_id = :merchant_id"
                ).bindparams(merchant),
                {"merchant_id": uuid.UUID(merchant_id)},
            )
    finally:
        await database.dispose()
    return int(customers or 0), int(entries or 0), int(balance or 0)


def measure(
    label: str, database_url: str, path: Path, rows: int, points: int, options: argparse.Namespace
) -> list[Measure]:
    existing = rows // 2
    merchant_id = str(_cli_json(database_url, "merchants", "create", "Import shop")["id"])
    print(f"[{label}] seeding {existing:,} existing customers…", flush=True)
    started = time.perf_counter()
    asyncio.run(_prepare(database_url, merchant_id, existing))
    print(f"[{label}] seeded in {time.perf_counter() - started:.1f} s", flush=True)
    common: dict[str, Any] = {"label": label, "rows": rows}
    print(f"[{label}] dry run…", flush=True)
    dry = run_import(database_url, merchant_id, path, step="dry run", dry_run=True, **common)
    print(f"[{label}] {dry.seconds:.1f} s", flush=True)
    print(f"[{label}] import…", flush=True)
    applied = run_import(
        database_url,
        merchant_id,
        path,
        step="import",
        dry_run=False,
        py_spy=options.py_spy,
        py_spy_format=options.py_spy_format,
        **common,
    )
    print(f"[{label}] {applied.seconds:.1f} s", flush=True)
    summary = applied.summary
    customers, entries, balance = asyncio.run(_count(database_url, merchant_id))
    problems = []
    if summary.get("rows") != rows or summary.get("rows_failed") != 0:
        problems.append(f"summary {summary}")
    if summary.get("customers_created") != rows - existing:
        problems.append(f"{summary.get('customers_created')} customers created")
    if (customers, entries, balance) != (rows, rows, points * MINOR_PER_POINT):
        problems.append(f"{customers} customers, {entries} entries, balances {balance}")
    if problems:
        raise RuntimeError(f"[{label}] the import is not what the file says: {problems}")
    return [dry, applied]


def measure_sqlite(
    path: Path, rows: int, points: int, options: argparse.Namespace
) -> list[Measure]:
    with tempfile.TemporaryDirectory(prefix="loyalty-import-bench-") as directory:
        database_url = f"sqlite:///{directory}/loyalty.db"
        return measure("SQLite", database_url, path, rows, points, options)


def measure_postgres(
    path: Path, rows: int, points: int, options: argparse.Namespace
) -> list[Measure]:
    admin_url: str = options.postgres_url
    name = f"loyalty_bench_import_{uuid.uuid4().hex[:10]}"
    base, _, _ = admin_url.rpartition("/")
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        return measure("Postgres", f"{base}/{name}", path, rows, points, options)
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- report ----------------------------------------------------------------------------


def table(measures: list[Measure], rows: int) -> str:
    per_million = 1_000_000 / rows
    lines = [
        f"{'database':<10} {'step':<8} {'rows':>10} {'seconds':>9} {'rows/s':>9} "
        f"{'s per 1M':>9} {'peak RSS':>9} {'CPU s':>7}",
    ]
    for m in measures:
        lines.append(
            f"{m.database:<10} {m.step:<8} {m.rows:>10,} {m.seconds:>9.1f} "
            f"{m.rows_per_second:>9,.0f} {m.seconds * per_million:>9.1f} "
            f"{m.peak_rss_mb:>6.0f} MB {m.cpu_seconds:>7.1f}"
        )
    lines.append("")
    for m in measures:
        if m.step != "import":
            continue
        speed = m.seconds * per_million <= SECONDS_PER_MILLION_MAX
        memory = m.peak_rss_mb <= RSS_MB_MAX
        lines.append(
            f"{m.database}: {SECONDS_PER_MILLION_MAX:.0f} s per million rows "
            f"{'met' if speed else 'MISSED'}; peak RSS ≤ {RSS_MB_MAX:.0f} MB "
            f"{'met' if memory else 'MISSED'}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "LOYALTY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="an existing database of the cluster to create the benchmark's database from",
    )
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="record the import under py-spy into PREFIX-<database>.*"
    )
    parser.add_argument(
        "--py-spy-format",
        choices=("flamegraph", "speedscope", "raw"),
        default="flamegraph",
        help="py-spy's output: an SVG flame graph, speedscope JSON or collapsed stacks (text)",
    )
    options = parser.parse_args()
    if options.rows < 2:
        parser.error("--rows must be at least 2")
    measures: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="loyalty-import-file-") as directory:
        path = Path(directory) / "members.csv"
        print(f"writing {options.rows:,} rows…", flush=True)
        points = write_file(path, options.rows, options.rows // 2)
        print(f"{path.stat().st_size / 1e6:.1f} MB", flush=True)
        if not options.skip_sqlite:
            measures += measure_sqlite(path, options.rows, points, options)
        if not options.skip_postgres:
            measures += measure_postgres(path, options.rows, points, options)
    report = table(measures, options.rows)
    print()
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"imports-{stamp}.txt").write_text(report + "\n")
    figures = {
        "rows": options.rows,
        "measures": [
            {**asdict(m), "rows_per_second": round(m.rows_per_second, 1)} for m in measures
        ],
    }
    (RESULTS / f"imports-{stamp}.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
