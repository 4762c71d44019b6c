"""Fault injection on Postgres: crashes and outages under load lose nothing.

Keyed points movements run against ``loyalty serve --workers 2`` while the
test kills the API with SIGKILL (and starts it again), terminates every
database backend, and stops Postgres with ``-m immediate`` (and starts it
again). Afterwards:

- every request that was answered 2xx is in the ledger, exactly once;
- retrying every request with its Idempotency-Key applies nothing twice
  (acknowledged ones replay their answer, unacknowledged ones apply once);
- every customer's ledger invariants hold;
- the API became ready again by itself after the database came back;
- every event was delivered to the webhook endpoint, at least once, by a
  ``loyalty worker`` that was itself killed with SIGKILL and started again,
  and that kept delivering across the database's restart.

It restarts the whole Postgres cluster, so it runs in its own pytest
invocation (``pytest -m faults``, part of ``make test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from benchmarks.__main__ import free_port

from tests.support.postgres import POSTGRES_ADMIN_URL, postgres_admin, postgres_url_for
from tests.support.receiver import Receiver, running_receiver
from tests.support.server import cli_json

pytestmark = pytest.mark.faults

CUSTOMERS = 40
CLIENTS = 16
LOAD_SECONDS_PER_PHASE = 1.5
RECOVERY_SECONDS_MAX = 60


@dataclass
class Attempt:
    key: str
    customer_id: str
    points: int
    status_code: int | None = None  # None: no answer (connection lost, timeout)
    body: dict[str, Any] | None = None


@dataclass
class Load:
    base_url: str
    token: str
    attempts: list[Attempt] = field(default_factory=list)
    running: bool = True

    async def client_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        async with httpx.AsyncClient(timeout=5) as client:
            while self.running:
                attempt = Attempt(
                    uuid.uuid4().hex, f"c{rng.randrange(CUSTOMERS)}", rng.choice([7, 3, -2, -9])
                )
                self.attempts.append(attempt)
                try:
                    response = await send(client, self.base_url, self.token, attempt)
                    attempt.status_code = response.status_code
                    attempt.body = response.json()
                except (httpx.TransportError, ValueError):
                    await asyncio.sleep(0.05)


async def send(
    client: httpx.AsyncClient, base_url: str, token: str, attempt: Attempt
) -> httpx.Response:
    return await client.post(
        f"{base_url}/api/v1/public/customers/transactions",
        params={"customer_id": attempt.customer_id},
        json={"points": attempt.points, "description": "fault test"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": attempt.key},
    )


class Server:
    """``loyalty serve`` on a fixed port (or ``loyalty worker``), so that it can be
    killed and restarted."""

    def __init__(self, database_url: str, directory: Path, command: str = "serve") -> None:
        self.command = command
        self.database_url = database_url
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        environment = {
            **os.environ,
            "LOYALTY_DATABASE_URL": self.database_url,
            "LOYALTY_LOG_LEVEL": "warning",
            "LOYALTY_RATE_LIMIT_DEFAULT": "1000000/minute",
            "LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            "LOYALTY_WEBHOOK_TIMEOUT_SECONDS": "3",
        }
        log = (self.directory / f"{self.command}-{time.monotonic_ns()}.log").open("wb")
        arguments = ["serve", "--port", str(self.port), "--workers", "2"]
        if self.command == "worker":
            arguments = ["worker", "--interval-seconds", "3600"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loyalty", *arguments],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)


async def wait_ready(base_url: str, seconds: float = RECOVERY_SECONDS_MAX) -> float:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() - started < seconds:
            try:
                if (await client.get(f"{base_url}/readyz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"{base_url} did not become ready within {seconds} s")


def postgres_cluster(action: str, *options: str) -> None:
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *options],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def wait_postgres() -> None:
    for _ in range(RECOVERY_SECONDS_MAX * 5):
        try:
            connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=2)
            await connection.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.2)
    pytest.fail("Postgres did not come back")


@pytest.fixture
async def fault_database() -> AsyncIterator[str]:
    name = f"loyalty_faults_{uuid.uuid4().hex[:10]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url_for(name)
    finally:
        await wait_postgres()
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_crashes_and_outages_lose_nothing(fault_database: str, tmp_path: Path) -> None:
    merchant = cli_json(fault_database, "merchants", "create", "Fault shop")
    token = cli_json(
        fault_database, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )["token"]
    server = Server(fault_database, tmp_path)
    server.start()
    await wait_ready(server.base_url)
    receiver_context = running_receiver()
    receiver = receiver_context.__enter__()
    worker = Server(fault_database, tmp_path, "worker")
    worker.start()
    async with httpx.AsyncClient(timeout=10) as client:
        registered = await client.post(
            f"{server.base_url}/api/v1/webhooks",
            json={"url": receiver.url(), "event_types": ["transaction.created"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert registered.status_code == 201
        for n in range(CUSTOMERS):
            response = await client.post(
                f"{server.base_url}/api/v1/public/customers",
                json={"customer_id": f"c{n}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201

    load = Load(server.base_url, token)
    clients = [asyncio.create_task(load.client_loop(seed)) for seed in range(CLIENTS)]
    report: list[str] = []
    try:
        await asyncio.sleep(LOAD_SECONDS_PER_PHASE)

        # 1. The API is killed mid-batch and started again; so is the webhook worker.
        server.kill(signal.SIGKILL)
        worker.kill(signal.SIGKILL)
        server.start()
        worker.start()
        report.append(f"kill -9 API: ready again after {await wait_ready(server.base_url):.1f} s")
        await asyncio.sleep(LOAD_SECONDS_PER_PHASE)

        # 2. Every backend of the database is terminated under load.
        terminated = await terminate_backends(fault_database)
        await asyncio.sleep(LOAD_SECONDS_PER_PHASE)
        report.append(f"pg_terminate_backend: {terminated} backends terminated")

        # 3. Postgres stops hard and starts again; the API is not restarted.
        postgres_cluster("stop", "-m", "immediate")
        await asyncio.sleep(1)
        postgres_cluster("start")
        await wait_postgres()
        recovered = await wait_ready(server.base_url)
        report.append(f"postgres stop -m immediate: API ready again after {recovered:.1f} s")
        await asyncio.sleep(LOAD_SECONDS_PER_PHASE)
    finally:
        load.running = False
        await asyncio.gather(*clients, return_exceptions=True)

    try:
        await verify(load, fault_database, server.base_url, token, report)
        await verify_deliveries(receiver, fault_database, report)
    finally:
        server.kill(signal.SIGTERM)
        worker.kill(signal.SIGTERM)
        receiver_context.__exit__(None, None, None)
    print("\n" + "\n".join(report))


async def verify_deliveries(receiver: Receiver, database_url: str, report: list[str]) -> None:
    """Every transaction.created event reaches the receiver (at least once)."""
    connection = await asyncpg.connect(database_url)
    try:
        events = {
            str(row["id"])
            for row in await connection.fetch(
                "SELECT id FROM events WHERE type = 'transaction.created'"
            )
        }
    finally:
        await connection.close()
    deadline = time.monotonic() + RECOVERY_SECONDS_MAX
    while not events <= set(receiver.ids()):
        assert time.monotonic() < deadline, f"{len(events - set(receiver.ids()))} undelivered"
        await asyncio.sleep(0.2)
    received = receiver.ids()
    report.append(
        f"webhooks: {len(events)} events, all delivered ({len(received)} requests, "
        f"{len(received) - len(set(received))} repeated after the worker's kill)"
    )


async def terminate_backends(database_url: str) -> int:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        name = database_url.rsplit("/", 1)[1]
        count: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return count
    finally:
        await connection.close()


async def verify(
    load: Load, database_url: str, base_url: str, token: str, report: list[str]
) -> None:
    answered = [a for a in load.attempts if a.status_code is not None]
    acknowledged = [a for a in answered if a.status_code == 201]
    unanswered = [a for a in load.attempts if a.status_code is None]
    server_errors = [a for a in answered if a.status_code is not None and a.status_code >= 500]
    report.append(
        f"load: {len(load.attempts)} requests, {len(acknowledged)} acknowledged (201), "
        f"{len(answered) - len(acknowledged) - len(server_errors)} refused (422), "
        f"{len(server_errors)} 503 during outages, {len(unanswered)} without an answer"
    )
    assert {a.status_code for a in server_errors} <= {503}

    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        ids = [row["id"] for row in await connection.fetch("SELECT id FROM ledger_entries")]
        assert len(ids) == len(set(ids))
        in_ledger = {str(entry_id) for entry_id in ids}
        for attempt in acknowledged:
            assert attempt.body is not None
            assert attempt.body["data"]["transaction_id"] in in_ledger

        # Every request again, twice, with its key: nothing applies twice.
        slots = asyncio.Semaphore(CLIENTS)
        async with httpx.AsyncClient(timeout=30) as client:

            async def retry(attempt: Attempt) -> None:
                async with slots:
                    response = await send(client, base_url, token, attempt)
                assert response.status_code in (201, 422), response.text
                if attempt.status_code in (201, 422):
                    assert response.headers["Idempotent-Replayed"] == "true"
                    assert response.json() == attempt.body
                attempt.status_code, attempt.body = response.status_code, response.json()

            for _ in range(2):
                await asyncio.gather(*(retry(attempt) for attempt in load.attempts))
        applied = sum(1 for attempt in load.attempts if attempt.status_code == 201)
        entries = await connection.fetchval("SELECT count(*) FROM ledger_entries")
        assert entries == applied
        await check_invariants(connection)
        report.append(
            f"after retrying all {len(load.attempts)} requests twice: {entries} entries = "
            f"{applied} distinct accepted keys; invariants hold for {CUSTOMERS} customers"
        )
    finally:
        await connection.close()


async def check_invariants(connection: asyncpg.Connection) -> None:
    balances = await connection.fetch(
        "SELECT customer_id, points_balance_minor, lifetime_points_minor, last_sequence "
        "FROM customer_balances"
    )
    for balance in balances:
        entries = await connection.fetch(
            "SELECT sequence, points_minor, balance_after_minor, lifetime_delta_minor "
            "FROM ledger_entries WHERE customer_id = $1 ORDER BY sequence",
            balance["customer_id"],
        )
        running = 0
        for expected_sequence, entry in enumerate(entries, start=1):
            assert entry["sequence"] == expected_sequence
            running += entry["points_minor"]
            assert running >= 0
            assert entry["balance_after_minor"] == running
        assert balance["points_balance_minor"] == running
        assert balance["last_sequence"] == len(entries)
        assert balance["lifetime_points_minor"] == sum(e["lifetime_delta_minor"] for e in entries)
