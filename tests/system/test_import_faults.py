"""Imports killed with SIGKILL mid-way, then finished: every row applied exactly once.

On SQLite and on Postgres, a fresh database each:

- ``loyalty customers import FILE --merchant ID --json`` killed between two
  checkpoints, then the same command run again to the end;
- ``POST /api/v1/imports`` on a ``loyalty serve`` (scheduler off) killed while
  the job runs; once the job's lease has lapsed, ``loyalty worker --once``
  finishes it.

The file: 30,000 rows over 20,000 customers (half of them already enrolled),
10,000 customers on two rows far apart, every row with points, some debits
(each within what the customer's earlier rows credited), some emails and
names. Afterwards every customer's balance is the sum of its rows' points,
its lifetime points the sum of its credits, and the ledger holds one entry
per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.__main__ import free_port
from benchmarks.imports import seed_customers
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.db.tables import (
    customer_balances,
    customers,
    import_chunks,
    imports,
    ledger_entries,
)
from loyalty.db.types import utc_now
from loyalty.points import MINOR_PER_POINT
from loyalty.settings import Settings
from tests.support.server import cli_json, environment

pytestmark = pytest.mark.slow

ROWS = 30_000
CUSTOMERS = 20_000
EXISTING = 10_000  # enrolled before the import: "c1" … "c10000"
STARTUP_SECONDS_MAX = 60
PROGRESS_SECONDS_MAX = 60
FINISH_SECONDS_MAX = 120


@dataclass
class ImportFile:
    """The file and what it must do: per customer, its rows' points in file order."""

    path: Path
    points: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def rows(self) -> int:
        return sum(len(points) for points in self.points.values())


def write_import_file(path: Path, seed: int = 7) -> ImportFile:
    rng = random.Random(seed)
    ids = [f"c{n}" for n in range(1, EXISTING + 1)]
    ids += [f"n{n}" for n in range(1, CUSTOMERS - EXISTING + 1)]
    twice = rng.sample(ids, ROWS - CUSTOMERS)
    # Second rows land anywhere after the first, often in another chunk of the
    # import and on the other side of the kill.
    order = ids + twice
    rng.shuffle(order)
    plan = ImportFile(path)
    balances: dict[str, int] = defaultdict(int)
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write("customer_id,points,email,first_name,last_name,description\n")
        for line, customer_id in enumerate(order, start=2):
            balance = balances[customer_id]
            if balance > 1 and rng.random() < 0.4:
                points = -rng.randint(1, balance)  # a debit the earlier rows cover
            else:
                points = rng.randint(1, 500)
            balances[customer_id] += points
            plan.points[customer_id].append(points)
            first_row = len(plan.points[customer_id]) == 1
            email = f"{customer_id}@example.com" if first_row and line % 4 == 0 else ""
            first, last = ("Ada", "Lovelace") if line % 3 == 0 else ("", "")
            description = f"Balance at line {line}" if line % 2 else ""
            file.write(f"{customer_id},{points},{email},{first},{last},{description}\n")
    assert plan.rows == ROWS
    return plan


# --- the database, read and written by the test ----------------------------------------


@contextlib.asynccontextmanager
async def opened(database_url: str) -> Any:
    database = Database(Settings(database_url=database_url), pool_size=2)
    try:
        yield database
    finally:
        await database.dispose()


async def seed(database: Database, merchant_id: uuid.UUID) -> None:
    async def work(connection: AsyncConnection) -> None:
        await seed_customers(connection, merchant_id, EXISTING)

    await database.transaction(work)


async def import_row(database: Database, merchant_id: uuid.UUID) -> Any:
    """The merchant's latest import."""
    async with database.read() as connection:
        statement = (
            select(imports)
            .where(imports.c.merchant_id == merchant_id)
            .order_by(imports.c.created_at.desc())
            .limit(1)
        )
        return (await connection.execute(statement)).one_or_none()


async def entry_count(database: Database, merchant_id: uuid.UUID) -> int:
    async with database.read() as connection:
        statement = select(func.count()).where(ledger_entries.c.merchant_id == merchant_id)
        return int(await connection.scalar(statement) or 0)


async def assert_applied_once(database: Database, merchant_id: uuid.UUID, plan: ImportFile) -> None:
    async with database.read() as connection:
        balances = {
            row.external_id: (row.points_balance_minor, row.lifetime_points_minor)
            for row in await connection.execute(
                select(
                    customers.c.external_id,
                    customer_balances.c.points_balance_minor,
                    customer_balances.c.lifetime_points_minor,
                )
                .join(
                    customer_balances,
                    (customer_balances.c.merchant_id == customers.c.merchant_id)
                    & (customer_balances.c.customer_id == customers.c.id),
                )
                .where(customers.c.merchant_id == merchant_id)
            )
        }
        entries = {
            row.external_id: (row.entries, row.points)
            for row in await connection.execute(
                select(
                    customers.c.external_id,
                    func.count().label("entries"),
                    func.sum(ledger_entries.c.points_minor).label("points"),
                )
                .join(
                    ledger_entries,
                    (ledger_entries.c.merchant_id == customers.c.merchant_id)
                    & (ledger_entries.c.customer_id == customers.c.id),
                )
                .where(customers.c.merchant_id == merchant_id)
                .group_by(customers.c.external_id)
            )
        }
    assert len(balances) == CUSTOMERS
    assert sum(count for count, _ in entries.values()) == plan.rows
    wrong = {}
    for customer_id, whole in plan.points.items():
        points = [amount * MINOR_PER_POINT for amount in whole]
        expected_balance = sum(points)
        expected = (
            (expected_balance, sum(p for p in points if p > 0)),
            (len(points), expected_balance),
        )
        found = (balances.get(customer_id), entries.get(customer_id))
        if found != expected:
            wrong[customer_id] = {"expected": expected, "found": found, "rows": points}
    assert not wrong, f"{len(wrong)} customers differ, e.g. {list(wrong.items())[:5]}"


# --- processes ------------------------------------------------------------------------


def start(
    database_url: str, directory: Path, name: str, *args: str, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``loyalty ARGS`` in a session of its own (so that SIGKILL reaches all of it)."""
    log = (directory / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "loyalty", *args],
        env={**environment(database_url), **(extra or {})},
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``loyalty ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "loyalty", *args],
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=FINISH_SECONDS_MAX,
        check=False,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def killed_at_exit(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            kill(process)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    seconds: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.05)


def log_of(directory: Path, name: str) -> str:
    return (directory / f"{name}.log").read_text(errors="replace")[-4000:]


def mid_way(row: Any) -> bool:
    return row is not None and row.status == "running" and 0 < row.rows_done < row.rows_total


async def kill_between_checkpoints(
    database: Database, merchant_id: uuid.UUID, process: subprocess.Popen[bytes]
) -> None:
    """SIGKILL the importing process once the job has a checkpoint, at the next
    moment the ledger runs ahead of it (a batch of movements committed, its
    checkpoint not written yet: those rows are read again after the kill and must
    apply once), or when half the rows are done."""
    deadline = time.monotonic() + PROGRESS_SECONDS_MAX
    while True:
        async with database.read() as connection:  # one snapshot of both
            entries = await connection.scalar(
                select(func.count()).where(ledger_entries.c.merchant_id == merchant_id)
            )
            entries = int(entries or 0)
            row = (
                await connection.execute(
                    select(imports.c.status, imports.c.rows_done, imports.c.rows_total)
                    .where(imports.c.merchant_id == merchant_id)
                    .order_by(imports.c.created_at.desc())
                    .limit(1)
                )
            ).one_or_none()
        if row is not None and mid_way(row):
            ahead = entries > row.rows_done  # a batch committed, its checkpoint not yet
            if ahead or row.rows_done * 2 >= row.rows_total:
                kill(process)
                return
        if process.poll() is not None:
            pytest.fail(f"the import ended ({process.returncode}) before it could be killed")
        if time.monotonic() > deadline:
            pytest.fail(f"no progress within {PROGRESS_SECONDS_MAX} s")
        await asyncio.sleep(0.002)


# --- the tests ------------------------------------------------------------------------


async def test_a_cli_import_killed_mid_way_applies_every_row_once_when_run_again(
    fresh_database_url: str, tmp_path: Path
) -> None:
    url = fresh_database_url
    merchant = cli_json(url, "merchants", "create", "Import shop")["id"]
    merchant_id = uuid.UUID(merchant)
    plan = write_import_file(tmp_path / "members.csv")
    command = ("customers", "import", str(plan.path), "--merchant", merchant, "--json")
    async with opened(url) as database:
        await seed(database, merchant_id)
        with killed_at_exit(start(url, tmp_path, "first", *command)) as first:
            await kill_between_checkpoints(database, merchant_id, first)
        # Killed for real, mid-way: some rows in the ledger, not all.
        written = await entry_count(database, merchant_id)
        assert 0 < written < plan.rows, log_of(tmp_path, "first")
        row = await import_row(database, merchant_id)
        assert row.status == "running"

        again = await asyncio.to_thread(run, url, *command)
        assert again.returncode == 0, again.stderr[-4000:] + again.stdout[-4000:]
        summary = json.loads(again.stdout)
        assert summary["rows"] == ROWS
        assert summary["rows_failed"] == 0, summary["errors"]
        # Every movement the killed run made is replayed, not made again.
        assert summary["rows_already_applied"] == written > 0
        await assert_applied_once(database, merchant_id, plan)
        print(  # the figures, with pytest -s
            f"CLI killed after {written} of {plan.rows} entries; run again: "
            f"{summary['rows_already_applied']} rows already applied, "
            f"{await entry_count(database, merchant_id)} entries in the end"
        )


async def test_an_api_import_whose_server_is_killed_is_finished_by_a_worker(
    fresh_database_url: str, tmp_path: Path
) -> None:
    url = fresh_database_url
    merchant = cli_json(url, "merchants", "create", "Import shop")["id"]
    merchant_id = uuid.UUID(merchant)
    token = cli_json(url, "keys", "create", "--merchant", merchant, "--scopes", "all")["token"]
    plan = write_import_file(tmp_path / "members.csv")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    serve = ("serve", "--port", str(port), "--workers", "1")
    async with opened(url) as database:
        await seed(database, merchant_id)
        server = start(url, tmp_path, "serve", *serve, extra={"LOYALTY_SCHEDULER": "off"})
        with killed_at_exit(server):
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as client:

                async def ready() -> bool:
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(ready, STARTUP_SECONDS_MAX, "the server to be ready", server)
                created = await client.post(
                    "/api/v1/imports",
                    content=plan.path.read_bytes(),
                    headers={"Content-Type": "text/csv"},
                )
                assert created.status_code == 202, created.text
                job = created.json()["data"]
                assert job["status"] in ("validating", "running")
                import_id = uuid.UUID(job["id"])
                seen: dict[str, Any] = {}

                async def progressing() -> bool:
                    response = await client.get(f"/api/v1/imports/{import_id}")
                    assert response.status_code == 200, response.text
                    seen.update(response.json()["data"])
                    assert seen["status"] in ("validating", "running"), seen
                    return int(seen["rows_done"]) > 0

                await wait_until(progressing, PROGRESS_SECONDS_MAX, "the first checkpoint", server)
                await kill_between_checkpoints(database, merchant_id, server)
        assert seen["rows_total"] == ROWS
        row = await import_row(database, merchant_id)
        assert row.id == import_id
        assert mid_way(row), row
        written = await entry_count(database, merchant_id)
        assert 0 < written < plan.rows, log_of(tmp_path, "serve")
        # Rows up to the checkpoint are done (each one entry); the ones after it that
        # the killed server applied are replayed by the worker.
        checkpoint = row.checkpoint_line
        replayed = written - (checkpoint - 1)
        assert replayed >= 0

        # The lease (60 s) lapses: what a dead holder's job looks like.
        async def lapse(connection: AsyncConnection) -> None:
            await connection.execute(
                update(imports)
                .where(imports.c.merchant_id == merchant_id, imports.c.id == import_id)
                .values(locked_until=utc_now() - timedelta(seconds=1))
            )

        await database.transaction(lapse)
        worker = await asyncio.to_thread(run, url, "worker", "--once")
        assert worker.returncode == 0, worker.stderr[-4000:] + worker.stdout[-4000:]
        assert "resumed 1 import(s)" in worker.stdout, worker.stdout[-4000:]
        row = await import_row(database, merchant_id)
        assert row.status == "succeeded", (row, worker.stdout[-4000:], worker.stderr[-4000:])
        assert row.finished_at is not None
        assert row.locked_until is None
        assert (row.rows_total, row.rows_done, row.rows_failed) == (ROWS, ROWS, 0)
        assert row.rows_already_applied == replayed
        async with database.read() as connection:
            stored = await connection.scalar(
                select(func.count()).where(import_chunks.c.import_id == import_id)
            )
        assert stored == 0  # the stored body is dropped once the job is done
        print(  # the figures, with pytest -s
            f"server killed after {written} of {plan.rows} entries (checkpoint at line "
            f"{checkpoint}); the worker replayed {replayed} and finished the job"
        )
        await assert_applied_once(database, merchant_id, plan)
