"""Benchmark harness: the API against pgbench running the same SQL, in one run.

    python -m benchmarks [--seconds 15] [--clients 64] [--workers 2]

Creates a Postgres database with 100k customers over 10 merchants, measures
pgbench (one operation per transaction) and the HTTP API (wrk, one thread)
on spread and hot-customer workloads, the read path against /healthz, and
the API on SQLite; prints one table with throughput, p50/p99 latency and the
ratios. Every process it starts is stopped and the database dropped, even on
failure. Needs ``pgbench`` and ``wrk`` (Debian packages postgresql-client and
wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.machine import (
    STALL_MS,
    DiskProbe,
    DiskSummary,
    cpu_times,
    idle_share,
    percentile,
    probe_directory,
    steal_share,
)
from loyalty.auth import service as auth_service
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head
from loyalty.rewards import service as rewards_service
from loyalty.rewards.schemas import CreateReward
from loyalty.settings import Settings

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SERVER_STARTUP_SECONDS_MAX = 60


@dataclass
class Result:
    name: str
    requests_per_second: float
    latency_ms_p50: float
    latency_ms_p99: float
    errors: int = 0
    notes: str = ""
    # The disk's flushes and the CPU stolen by the host while the workload ran
    # (benchmarks/machine.py).
    disk: DiskSummary | None = None
    steal: float | None = None
    # The share of the machine's CPU time no process used.
    idle: float | None = None


@dataclass
class Run:
    started_at: str
    options: dict[str, object]
    results: list[Result] = field(default_factory=list)
    # Where each part of the run probed the disk.
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> Result | None:
        return next((result for result in self.results if result.name == name), None)


def merchant_uuid(number: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-7000-8000-{number:012d}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_tools() -> None:
    missing = [tool for tool in ("pgbench", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: install the Debian packages "
            "postgresql-client (pgbench) and wrk"
        )


# --- data -----------------------------------------------------------------

SEED_002_CATALOGUE = [
    CreateReward(
        name="$5 off your next order",
        description="Redeem 500 points for a $5 discount.",
        reward_type="fixed_discount",
        points_cost=500,
        reward_rule={"discount_value": 5},
    ),
    CreateReward(
        name="10% off your next order",
        description="Redeem 1000 points for 10% off.",
        reward_type="percentage_discount",
        points_cost=1000,
        reward_rule={"discount_percentage": 10},
    ),
]


async def seed(database_url: str, merchants: int, customers_per_merchant: int) -> list[str]:
    """Merchants with deterministic ids, customers c1..cN each, one key per merchant."""
    await asyncio.to_thread(upgrade_to_head, database_url)
    database = Database(Settings(database_url=database_url), pool_size=2)

    async def insert(connection: AsyncConnection) -> list[str]:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        tokens: list[str] = []
        for number in range(1, merchants + 1):
            merchant_id = merchant_uuid(number)
            if database.is_sqlite:
                await _seed_sqlite(driver, merchant_id, number, customers_per_merchant)
            else:
                await _seed_postgres(driver, merchant_id, number, customers_per_merchant)
            # Seed 002's catalogue, so the redeemable read has rewards to show.
            for reward in SEED_002_CATALOGUE:
                await rewards_service.create_reward(connection, merchant_id, reward)
            key = await auth_service.create_key(
                connection, merchant_id=merchant_id, scopes="all", name="benchmark"
            )
            tokens.append(key.token)
        return tokens

    try:
        return await database.transaction(insert)
    finally:
        await database.dispose()


async def _seed_postgres(
    driver: asyncpg.Connection, merchant_id: uuid.UUID, number: int, customers: int
) -> None:
    await driver.execute(
        "INSERT INTO merchants (id, name, created_at) VALUES ($1, $2, now())",
        merchant_id,
        f"Benchmark shop {number}",
    )
    await driver.execute(
        "INSERT INTO program_settings (merchant_id, points_decimals, default_description, "
        "updated_at) VALUES ($1, 0, 'Points adjustment', now())",
        merchant_id,
    )
    await driver.execute(
        "INSERT INTO customers (merchant_id, id, external_id, status, total_spent_minor, "
        "created_at, updated_at) SELECT $1, gen_random_uuid(), 'c' || n, 'active', 0, now(), now() "
        "FROM generate_series(1, $2) AS n",
        merchant_id,
        customers,
    )
    # A large opening balance so random debits rarely fail.
    await driver.execute(
        "INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor, "
        "lifetime_points_minor, last_sequence, updated_at) "
        "SELECT merchant_id, id, 100000000, 100000000, 0, now() FROM customers "
        "WHERE merchant_id = $1",
        merchant_id,
    )


async def _seed_sqlite(driver: object, merchant_id: uuid.UUID, number: int, customers: int) -> None:
    execute = driver.execute  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    await execute(
        "INSERT INTO merchants (id, name, created_at) VALUES (?, ?, ?)",
        (merchant_id.hex, f"Benchmark shop {number}", now),
    )
    await execute(
        "INSERT INTO program_settings (merchant_id, points_decimals, default_description, "
        "updated_at) VALUES (?, 0, 'Points adjustment', ?)",
        (merchant_id.hex, now),
    )
    rows = [(merchant_id.hex, uuid.uuid4().hex, f"c{n}", now, now) for n in range(1, customers + 1)]
    await driver.executemany(  # type: ignore[attr-defined]
        "INSERT INTO customers (merchant_id, id, external_id, status, total_spent_minor, "
        "created_at, updated_at) VALUES (?, ?, ?, 'active', 0, ?, ?)",
        rows,
    )
    await execute(
        "INSERT INTO customer_balances (merchant_id, customer_id, points_balance_minor, "
        "lifetime_points_minor, last_sequence, updated_at) "
        "SELECT merchant_id, id, 100000000, 100000000, 0, created_at FROM customers "
        "WHERE merchant_id = ?",
        (merchant_id.hex,),
    )


# --- load generators -------------------------------------------------------


def run_pgbench(
    name: str,
    script: Path,
    dsn: str,
    *,
    clients: int,
    seconds: int,
    merchants: int,
    customers_per_merchant: int,
) -> Result:
    with tempfile.TemporaryDirectory() as log_directory:
        command = [
            "pgbench", "-n", "-M", "prepared",
            "-c", str(clients), "-j", "1", "-T", str(seconds),
            "-D", f"merchants={merchants}",
            "-D", f"customers_per_merchant={customers_per_merchant}",
            "-f", str(script), "-l", "--log-prefix", f"{log_directory}/pgbench",
            dsn,
        ]  # fmt: skip
        completed = subprocess.run(
            command, capture_output=True, text=True, cwd=log_directory, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(f"pgbench failed: {completed.stderr[-2000:]}")
        logs = [path.read_text() for path in Path(log_directory).glob("pgbench*")]
    return parse_pgbench(name, completed.stdout, logs)


def parse_pgbench(name: str, output: str, transaction_logs: list[str]) -> Result:
    """Throughput from pgbench's summary; p50/p99 from its per-transaction logs (-l)."""
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    latencies_ms: list[float] = []
    for log in transaction_logs:
        for line in log.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                latencies_ms.append(int(parts[2]) / 1000)
    return Result(
        name,
        float(match.group(1)) if match else float("nan"),
        percentile(latencies_ms, 0.50),
        percentile(latencies_ms, 0.99),
        errors=int(failed.group(1)) if failed else 0,
    )


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float:
    match = re.match(r"([0-9.]+)(us|ms|s|m)$", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def run_wrk(
    name: str,
    base_url: str,
    script: Path,
    config: Path,
    *,
    clients: int,
    seconds: int,
    path: str | None = None,
) -> Result:
    environment = {**os.environ, "LOYALTY_BENCH_CONFIG": str(config)}
    if path:
        environment["LOYALTY_BENCH_PATH"] = path
    command = [
        "wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(script), base_url,
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed: {completed.stderr[-2000:]}")
    return parse_wrk(name, completed.stdout)


def parse_wrk(name: str, output: str) -> Result:
    """Throughput, p50/p99 and errors from ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return Result(
        name,
        float(rps.group(1)) if rps else float("nan"),
        _wrk_ms(p50.group(1)) if p50 else float("nan"),
        _wrk_ms(p99.group(1)) if p99 else float("nan"),
        errors=int(non_2xx.group(1)) if non_2xx else 0,
        notes=socket_errors.group(1) if socket_errors else "",
    )


def write_wrk_config(
    directory: Path, name: str, tokens: list[str], customers_per_merchant: int, hot: bool
) -> Path:
    path = directory / f"{name}.lua"
    quoted = ", ".join(json.dumps(token) for token in tokens)
    path.write_text(
        f"tokens = {{{quoted}}}\n"
        f"customers_per_merchant = {customers_per_merchant}\n"
        f"hot = {'true' if hot else 'false'}\n"
    )
    return path


# --- server ----------------------------------------------------------------


@contextmanager
def server(
    database_url: str,
    workers: int,
    directory: Path,
    log_level: str = "warning",
    extra_environment: dict[str, str] | None = None,
) -> Iterator[str]:
    """A ready ``loyalty serve`` on a free port; its log is ``directory/server-PORT.log``."""
    port = free_port()
    environment = {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        # Tests and the benchmark drive keys far past a shop's budget; the limiter still runs.
        "LOYALTY_RATE_LIMIT_DEFAULT": "1000000/minute",
        "LOYALTY_LOG_LEVEL": log_level,
        **(extra_environment or {}),
    }
    log = (directory / f"server-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "loyalty", "serve", "--port", str(port), "--workers", str(workers)],
        env=environment,
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_STARTUP_SECONDS_MAX
        while True:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {log.name}")
            time.sleep(0.2)
        yield base_url
    finally:
        with _suppress_missing_process():
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _suppress_missing_process():
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _suppress_missing_process() -> suppress:
    return suppress(ProcessLookupError)


# --- the run ---------------------------------------------------------------


def probed(directory: Path, measure: Callable[[], Result]) -> Result:
    """The workload's result with the disk's flush latency, the CPU steal and the idle
    CPU while it ran."""
    before = cpu_times()
    with DiskProbe(directory) as probe:
        result = measure()
    result.disk = probe.summary()
    after = cpu_times()
    result.steal = steal_share(before, after)
    result.idle = idle_share(before, after)
    return result


async def _data_directory(admin_dsn: str) -> str | None:
    """Postgres's data directory, when this user may read the setting."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        value: str | None = await connection.fetchval("SHOW data_directory")
        return value
    except asyncpg.PostgresError:
        return None
    finally:
        await connection.close()


async def _admin(admin_dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def measure_postgres(options: argparse.Namespace, run: Run, directory: Path) -> None:
    admin_url: str = options.postgres_url
    name = f"loyalty_bench_{uuid.uuid4().hex[:10]}"
    base, _, _ = admin_url.rpartition("/")
    database_url = f"{base}/{name}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    disk, where = probe_directory(directory, asyncio.run(_data_directory(admin_url)))
    run.notes.append(f"Postgres workloads: disk probed in {where} ({disk})")
    try:
        per_merchant = options.customers // options.merchants
        print(f"seeding {options.customers:,} customers over {options.merchants} merchants…")
        tokens = asyncio.run(seed(database_url, options.merchants, per_merchant))
        common = {"clients": options.clients, "seconds": options.seconds}
        baselines = [
            ("pgbench movement, spread", "movement.pgbench.sql", options.merchants, per_merchant),
            ("pgbench minimal, spread", "minimal.pgbench.sql", options.merchants, per_merchant),
            ("pgbench movement, hot", "movement.pgbench.sql", 1, 1),
        ]
        for label, script, merchants, customers in baselines:
            print(f"running {label}…")
            run.results.append(
                probed(
                    disk,
                    partial(
                        run_pgbench,
                        label,
                        HERE / script,
                        database_url,
                        merchants=merchants,
                        customers_per_merchant=customers,
                        **common,
                    ),
                )
            )
        spread = write_wrk_config(directory, "spread", tokens, per_merchant, hot=False)
        hot = write_wrk_config(directory, "hot", tokens, per_merchant, hot=True)
        with server(database_url, options.workers, directory) as base_url:
            print(f"warming up the API ({options.workers} workers)…")
            run_wrk(
                "warm-up", base_url, HERE / "adjust.lua", spread, clients=options.clients, seconds=3
            )
            for label, config in (("API adjust, spread", spread), ("API adjust, hot", hot)):
                print(f"running {label}…")
                run.results.append(
                    probed(
                        disk,
                        partial(run_wrk, label, base_url, HERE / "adjust.lua", config, **common),
                    )
                )
            for label, path in (
                ("API GET /healthz", "/healthz"),
                ("API GET redeemable", "/api/v1/public/customers/rewards/redeemable"),
                ("API GET customer", "/api/v1/public/customers"),
            ):
                print(f"running {label}…")
                run.results.append(
                    probed(
                        disk,
                        partial(
                            run_wrk, label, base_url, HERE / "read.lua", spread, path=path, **common
                        ),
                    )
                )
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure_sqlite(options: argparse.Namespace, run: Run, directory: Path) -> None:
    database_url = f"sqlite:///{directory / 'bench.db'}"
    customers = min(options.customers, 10_000)
    print(f"seeding SQLite with {customers:,} customers…")
    tokens = asyncio.run(seed(database_url, 1, customers))
    config = write_wrk_config(directory, "sqlite", tokens, customers, hot=False)
    with server(database_url, 1, directory) as base_url:
        run_wrk(
            "warm-up", base_url, HERE / "adjust.lua", config, clients=options.clients, seconds=2
        )
        run.notes.append(f"SQLite: disk probed in the database's directory ({directory})")
        print("running SQLite API adjust…")
        run.results.append(
            probed(
                directory,
                lambda: run_wrk(
                    "SQLite API adjust, spread (1 worker)",
                    base_url,
                    HERE / "adjust.lua",
                    config,
                    clients=options.clients,
                    seconds=options.seconds,
                ),
            )
        )


def ratio(numerator: Result | None, denominator: Result | None) -> str:
    if numerator is None or denominator is None or not denominator.requests_per_second:
        return "n/a"
    return f"{numerator.requests_per_second / denominator.requests_per_second:.2f}"


def report(run: Run) -> str:
    lines = [
        f"loyalty benchmark — {run.started_at} — "
        + ", ".join(f"{key}={value}" for key, value in run.options.items()),
        "",
        f"| {'workload':<40} | {'req/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'errors':>6} "
        f"| {'disk stalls':>11} | {'disk max ms':>11} | {'steal':>5} | {'idle':>4} |",
        f"|{'-' * 42}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 13}|{'-' * 7}"
        f"|{'-' * 6}|",
    ]
    for result in run.results:
        disk = result.disk
        stalls = f"{disk.stalls}" if disk and disk.flushes else "-"
        longest = f"{disk.max_ms:.1f}" if disk and disk.flushes else "-"
        steal = f"{result.steal:.0%}" if result.steal is not None else "-"
        idle = f"{result.idle:.0%}" if result.idle is not None else "-"
        lines.append(
            f"| {result.name:<40} | {result.requests_per_second:>9.0f} | "
            f"{result.latency_ms_p50:>7.2f} | {result.latency_ms_p99:>7.2f} | {result.errors:>6} "
            f"| {stalls:>11} | {longest:>11} | {steal:>5} | {idle:>4} |"
        )
    spread = run.get("API adjust, spread")
    hot = run.get("API adjust, hot")
    healthz = run.get("API GET /healthz")
    movement = run.get("pgbench movement, spread")
    minimal = run.get("pgbench minimal, spread")
    lines += [
        "",
        "ratios:",
        f"  API spread / pgbench movement spread  {ratio(spread, movement)}"
        "   (target >= 1.0, first milestone 0.6)",
        f"  API spread / pgbench minimal spread   {ratio(spread, minimal)}",
        f"  API hot / API spread                  {ratio(hot, spread)}   (target >= 0.8)",
        f"  API spread / GET /healthz             {ratio(spread, healthz)}   (target >= 0.4)",
        f"  pgbench hot / pgbench spread          "
        f"{ratio(run.get('pgbench movement, hot'), run.get('pgbench movement, spread'))}",
        f"  GET redeemable / GET /healthz         {ratio(run.get('API GET redeemable'), healthz)}"
        "   (target >= 0.6)",
        f"  GET customer / GET /healthz           {ratio(run.get('API GET customer'), healthz)}"
        "   (target >= 0.6)",
        "  p99 of adjust and reads               (target <= 50 ms at 64 connections)",
        "",
        f"disk: 8 KiB written and flushed (fdatasync) every 25 ms beside each workload; "
        f"a stall is a flush over {STALL_MS:.0f} ms. Every movement waits for its commit's "
        "flush, so a run with stalls has them in its p99. steal: the share of CPU time the "
        "host gave to other machines while the workload ran (every process here waited). "
        "idle: the share of CPU time no process used (waiting for I/O included); a "
        "workload that leaves idle time is bound by what it waits for, not by the cores.",
        *run.notes,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=int, default=15, help="duration of each measurement")
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (Postgres)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=10)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "LOYALTY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a database to connect to for creating (and dropping) the benchmark database",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    options = parser.parse_args()
    require_tools()
    run = Run(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        options={
            "seconds": options.seconds,
            "clients": options.clients,
            "workers": options.workers,
            "customers": options.customers,
        },
    )
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as temporary:
        directory = Path(temporary)
        if not options.skip_postgres:
            measure_postgres(options, run, directory)
        if not options.skip_sqlite:
            measure_sqlite(options, run, directory)
    text = report(run)
    print()
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = run.started_at.replace(":", "")
    (RESULTS / f"{stamp}.json").write_text(
        json.dumps({**asdict(run), "report": text}, indent=2, default=str)
    )
    (RESULTS / f"{stamp}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
