"""Many processes on one Postgres and one Redis, under mixed load for a bounded time.

Two ``loyalty serve --workers 2`` on two ports and two ``loyalty worker`` (the
scheduler every second) share one database and one Redis. Clients adjust points
with Idempotency-Keys spread over both servers (some keys sent to both at once),
read customers, and spend a rate-limited key's budget on both servers; credits
expire and holds come due during the run; a webhook endpoint receives every event.

Checked: every acknowledged write applied exactly once; the limited key's budget
not doubled; each lot expired once and each hold released once; every event
delivered to the endpoint once; the events feed complete and gap-free.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.processes import postgres_database, query, serve, worker
from tests.support.receiver import running_receiver
from tests.support.server import cli_json

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"
TRANSACTIONS = "/api/v1/public/customers/transactions"
LOAD_SECONDS = 15
CLIENTS = 24
CUSTOMERS = 16
DUE = 10  # customers with a lot that expires, and with a hold that is released, mid-run
LIMIT = 20  # the limited key's budget, per minute (moving window): the run is shorter


@dataclass
class Load:
    requests: int = 0
    reads: int = 0
    # key: the transaction ids of its 2xx answers (one per server it was sent to)
    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    answered: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    limited: Counter[int] = field(default_factory=Counter)


async def _write(client: httpx.AsyncClient, key: str, customer: str, load: Load) -> None:
    load.requests += 1
    try:
        response = await client.post(
            TRANSACTIONS,
            params={"customer_id": customer},
            json={"points": 1, "description": key},
            headers={"Idempotency-Key": key},
        )
    except httpx.TransportError as error:
        load.errors.append(f"{key}: {error!r}")
        return
    load.answered[response.status_code] += 1
    if response.is_success:
        load.acknowledged.setdefault(key, []).append(response.json()["data"]["transaction_id"])


async def _writer(clients: list[httpx.AsyncClient], index: int, until: float, load: Load) -> None:
    """Adjusts alternating between the servers; every fifth key to both at once; a
    read between writes."""
    number = 0
    while time.monotonic() < until:
        key = f"w{index}-{number}"
        customer = f"c{(index + number) % CUSTOMERS}"
        client = clients[(index + number) % 2]
        if number % 5 == 0:
            await asyncio.gather(*(_write(other, key, customer, load) for other in clients))
        else:
            await _write(client, key, customer, load)
        load.requests += 1
        load.reads += 1
        try:
            read = await client.get("/api/v1/public/customers", params={"customer_id": customer})
            load.answered[read.status_code] += 1
        except httpx.TransportError as error:
            load.errors.append(f"read: {error!r}")
        number += 1


async def _limited(clients: list[httpx.AsyncClient], until: float, load: Load) -> None:
    number = 0
    while time.monotonic() < until:
        load.requests += 1
        response = await clients[number % 2].get("/api/v1/rewards")
        load.limited[response.status_code] += 1
        number += 1
        await asyncio.sleep(0.05)


async def _feed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/events", params=params)).json()
        events.extend(page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return events


async def test_two_servers_two_workers_one_postgres_one_redis(tmp_path: Path) -> None:
    started = time.monotonic()
    store = redis.Redis.from_url(REDIS_URL)
    store.ping()  # Redis is required: fail (never skip) when it is unreachable
    prefix = f"loyalty_test_{uuid.uuid4().hex[:12]}"
    shared = {
        "LOYALTY_REDIS_URL": REDIS_URL,
        "LOYALTY_REDIS_PREFIX": prefix,
        "LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    servers_environment = {**shared, "LOYALTY_SCHEDULER": "off"}
    workers_environment = {**shared, "LOYALTY_SCHEDULER_INTERVAL_SECONDS": "1"}
    load = Load()
    try:
        async with postgres_database("loyalty_many") as database_url:
            merchant = cli_json(database_url, "merchants", "create", "Busy Shop")
            token = cli_json(
                database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
            )["token"]
            limited_token = cli_json(
                database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all",
                "--rate-limit", f"{LIMIT}/minute",
            )["token"]  # fmt: skip
            async with AsyncExitStack() as stack:
                receiver = stack.enter_context(running_receiver())
                servers = [
                    stack.enter_context(
                        serve(database_url, tmp_path, extra_environment=servers_environment)
                    )
                    for _ in range(2)
                ]
                for name in ("worker-1", "worker-2"):
                    stack.enter_context(worker(database_url, tmp_path, name, workers_environment))
                clients = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(
                            base_url=server.base_url,
                            headers={"Authorization": f"Bearer {token}"},
                            limits=httpx.Limits(max_connections=CLIENTS),
                            timeout=60,
                        )
                    )
                    for server in servers
                ]
                limited = [
                    await stack.enter_async_context(
                        httpx.AsyncClient(
                            base_url=server.base_url,
                            headers={"Authorization": f"Bearer {limited_token}"},
                        )
                    )
                    for server in servers
                ]
                first = clients[0]
                [earlier] = await query(database_url, "SELECT count(*) AS n FROM events")
                created = await first.post("/api/v1/webhooks", json={"url": receiver.url()})
                assert created.status_code == 201, created.text
                for number in range(CUSTOMERS):
                    response = await clients[number % 2].post(
                        "/api/v1/public/customers", json={"customer_id": f"c{number}"}
                    )
                    assert response.status_code == 201
                # Due mid-run: a lot that expires and a hold released, per customer.
                soon = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
                for number in range(DUE):
                    for kind, field_name in (("x", "expires_at"), ("p", "available_at")):
                        customer = f"{kind}{number}"
                        await first.post("/api/v1/public/customers", json={"customer_id": customer})
                        response = await clients[number % 2].post(
                            TRANSACTIONS,
                            params={"customer_id": customer},
                            json={"points": 7, "description": "due soon", field_name: soon},
                        )
                        assert response.status_code == 201, response.text

                until = time.monotonic() + LOAD_SECONDS
                await asyncio.gather(
                    *(_writer(clients, index, until, load) for index in range(CLIENTS)),
                    _limited(limited, until, load),
                )

                # Let the workers finish: every event numbered and delivered.
                deadline = time.monotonic() + 30
                while True:
                    [row] = await query(
                        database_url,
                        "SELECT (SELECT count(*) FROM events WHERE sequence IS NULL) AS unstamped,"
                        " (SELECT count(*) FROM webhook_attempts WHERE status <> 'succeeded')"
                        " AS undelivered",
                    )
                    if row["unstamped"] == row["undelivered"] == 0:
                        break
                    assert time.monotonic() < deadline, f"deliveries did not finish: {row}"
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1)  # a delivery made twice would arrive by now
                feed = await _feed(first)
                balances = {}
                for customer in [f"c{n}" for n in range(CUSTOMERS)] + [
                    f"{kind}{n}" for kind in "xp" for n in range(DUE)
                ]:
                    view = await first.get(
                        "/api/v1/public/customers", params={"customer_id": customer}
                    )
                    balances[customer] = view.json()["data"]["points_balance"]

            entries = await query(
                database_url,
                "SELECT e.description, e.kind, e.points_minor, c.external_id AS customer "
                "FROM ledger_entries e JOIN customers c "
                "ON c.merchant_id = e.merchant_id AND c.id = e.customer_id",
            )
            pending = await query(database_url, "SELECT status FROM pending_credits")
    finally:
        for name in store.scan_iter(f"{prefix}*"):
            store.delete(name)
        store.close()

    by_key = Counter(row["description"] for row in entries if row["description"][0] == "w")
    expired = Counter(row["customer"] for row in entries if row["kind"] == "expire")
    on_p = Counter(row["customer"] for row in entries if row["customer"][0] == "p")
    deliveries = receiver.ids()
    delivered = Counter(deliveries)
    feed_ids = [event["id"] for event in feed]
    sequences = [event["sequence"] for event in feed]
    allowed = load.limited[200]
    print(
        f"\n2 serve --workers 2 + 2 workers + Redis, {LOAD_SECONDS} s: {load.requests} "
        f"requests ({load.reads} reads), {len(load.acknowledged)} writes acknowledged "
        f"({sum(map(len, load.acknowledged.values()))} 2xx answers), answers "
        f"{dict(load.answered)}, {len(load.errors)} transport errors; {len(by_key)} ledger "
        f"entries for them; {sum(expired.values())} lots expired for {DUE}, "
        f"{Counter(row['status'] for row in pending)} holds; {len(feed)} events in the feed, "
        f"{len(deliveries)} deliveries for {len(delivered)} events; limited key "
        f"{LIMIT}/minute: {allowed} allowed, {load.limited[429]} rate-limited; "
        f"{time.monotonic() - started:.1f} s in all"
    )
    assert not load.errors, load.errors[:5]
    # Every acknowledged write exactly once: one entry per key, every answer the same.
    assert set(by_key) == set(load.acknowledged)
    assert all(count == 1 for count in by_key.values())
    assert all(len(set(ids)) == 1 for ids in load.acknowledged.values())
    assert sum(balances[f"c{n}"] for n in range(CUSTOMERS)) == len(load.acknowledged)
    # The limited key's budget is shared, not doubled.
    assert allowed == LIMIT
    assert load.limited[429] > 0
    assert set(load.limited) == {200, 429}
    # Scheduled jobs applied once: each lot expired once, each hold released once.
    assert expired == Counter({f"x{n}": 1 for n in range(DUE)})
    assert all(balances[f"x{n}"] == 0 for n in range(DUE))
    assert [row["status"] for row in pending] == ["released"] * DUE
    assert on_p == Counter({f"p{n}": 1 for n in range(DUE)})
    assert all(balances[f"p{n}"] == 7 for n in range(DUE))
    # Every event delivered once; the feed complete and gap-free.
    assert max(delivered.values()) == 1
    assert set(delivered) <= set(feed_ids)
    assert sequences == list(range(1, len(feed) + 1))
    # Only events from before the endpoint existed may be missing.
    assert len(feed) - len(delivered) <= earlier["n"]
