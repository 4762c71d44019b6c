"""Graceful shutdown under load: SIGTERM to ``loyalty serve --workers 2`` while many
keep-alive clients adjust points with Idempotency-Keys, and to ``loyalty worker``
while webhook deliveries are in flight (Postgres).

The server must exit 0 within its bound, answer every request it accepted (no
client sees a reset for a request that was applied), and leave nothing applied
that cannot be replayed; the worker must exit 0, finish what it sent, and leave
the rest to the next worker, nothing delivered twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from loyalty.cli import SHUTDOWN_GRACE_SECONDS, SHUTDOWN_SECONDS_MAX
from tests.support.processes import postgres_database, query, serve, worker
from tests.support.receiver import Answer, Received, running_receiver
from tests.support.server import cli_json

pytestmark = pytest.mark.slow

TRANSACTIONS = "/api/v1/public/customers/transactions"
CLIENTS = 48
CUSTOMERS = 16
ALLOWED = {"LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}


@dataclass
class Load:
    acknowledged: dict[str, str] = field(default_factory=dict)  # key: transaction id
    answered_otherwise: dict[str, int] = field(default_factory=dict)  # key: status
    refused: list[str] = field(default_factory=list)  # never reached the server
    dropped: dict[str, str] = field(default_factory=dict)  # sent, no answer: error

    @property
    def sent(self) -> int:
        return len(self.acknowledged) + len(self.answered_otherwise) + len(self.dropped)


def _adjust(key: str) -> dict[str, object]:
    return {"points": 1, "description": key}


async def _client(base_url: str, headers: dict[str, str], index: int, load: Load) -> None:
    """One keep-alive connection adjusting points until the server refuses it."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        for number in range(100_000):
            key = f"t{index}-{number}"
            try:
                response = await client.post(
                    TRANSACTIONS,
                    params={"customer_id": f"c{index % CUSTOMERS}"},
                    json=_adjust(key),
                    headers={"Idempotency-Key": key},
                )
            except httpx.ConnectError:
                load.refused.append(key)
                return  # the server stopped accepting
            except httpx.TransportError as error:
                load.dropped[key] = type(error).__name__
                continue
            if response.is_success:
                load.acknowledged[key] = response.json()["data"]["transaction_id"]
            else:
                load.answered_otherwise[key] = response.status_code


async def _ledger_by_key(database_url: str) -> dict[str, list[str]]:
    rows = await query(
        database_url, "SELECT description, id FROM ledger_entries WHERE description LIKE 't%-%'"
    )
    entries: dict[str, list[str]] = {}
    for row in rows:
        entries.setdefault(row["description"], []).append(str(row["id"]))
    return entries


async def test_serve_sigterm_under_load_answers_everything_it_accepted(tmp_path: Path) -> None:
    async with postgres_database("loyalty_shutdown") as database_url:
        merchant = cli_json(database_url, "merchants", "create", "Busy Shop")
        key = cli_json(
            database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
        )
        headers = {"Authorization": f"Bearer {key['token']}"}
        load = Load()
        with serve(database_url, tmp_path, workers=2) as server:
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
                for number in range(CUSTOMERS):
                    created = await client.post(
                        "/api/v1/public/customers", json={"customer_id": f"c{number}"}
                    )
                    assert created.status_code == 201
            clients = [
                asyncio.create_task(_client(server.base_url, headers, index, load))
                for index in range(CLIENTS)
            ]
            # SIGTERM in the middle of the load: once every client has had answers.
            for _ in range(600):
                if len(load.acknowledged) >= 10 * CLIENTS:
                    break
                await asyncio.sleep(0.05)
            before = load.sent
            elapsed = await asyncio.to_thread(server.terminate)
            await asyncio.wait_for(asyncio.gather(*clients), 60)
            returncode = server.process.returncode

        entries = await _ledger_by_key(database_url)
        unanswered = set(entries) - set(load.acknowledged)
        print(
            f"\nSIGTERM to serve --workers 2 after {before} requests from {CLIENTS} keep-alive "
            f"clients: exit {returncode} in {elapsed:.2f} s (bound {SHUTDOWN_GRACE_SECONDS} s "
            f"grace, {SHUTDOWN_SECONDS_MAX} s hard); {load.sent} requests sent, "
            f"{len(load.acknowledged)} acknowledged, {len(load.answered_otherwise)} answered "
            f"otherwise {Counter(load.answered_otherwise.values())}, {len(load.dropped)} "
            f"dropped unanswered {Counter(load.dropped.values())}, {len(load.refused)} refused "
            f"after shutdown began; {sum(map(len, entries.values()))} ledger entries, "
            f"{len(unanswered)} applied without an answer"
        )
        assert returncode == 0
        assert elapsed < SHUTDOWN_GRACE_SECONDS
        assert len(load.refused) == CLIENTS  # every client ran into the shutdown
        assert all(len(ids) == 1 for ids in entries.values())  # exactly once per key
        for acknowledged, transaction_id in load.acknowledged.items():
            assert entries[acknowledged] == [transaction_id]
        # No client lost the answer to a request the server applied.
        assert not unanswered
        assert not set(load.dropped) & set(entries)

        # Every key without an answer is safe to re-send: it replays or applies once.
        retried = [*load.dropped, *load.answered_otherwise, *load.refused]
        with serve(database_url, tmp_path, workers=1) as server:
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=headers, timeout=60
            ) as client:
                for retry in retried:
                    customer = retry[1:].split("-")[0]
                    response = await client.post(
                        TRANSACTIONS,
                        params={"customer_id": f"c{int(customer) % CUSTOMERS}"},
                        json=_adjust(retry),
                        headers={"Idempotency-Key": retry},
                    )
                    assert response.status_code == 201, response.text
                    replayed = response.headers.get("Idempotent-Replayed") == "true"
                    assert replayed == (retry in entries)
                # Re-sending an acknowledged key replays it.
                first = next(iter(load.acknowledged))
                replay = await client.post(
                    TRANSACTIONS,
                    params={"customer_id": f"c{int(first[1:].split('-')[0]) % CUSTOMERS}"},
                    json=_adjust(first),
                    headers={"Idempotency-Key": first},
                )
                assert replay.headers.get("Idempotent-Replayed") == "true"
                balances = 0.0
                for number in range(CUSTOMERS):
                    customer_view = await client.get(
                        "/api/v1/public/customers", params={"customer_id": f"c{number}"}
                    )
                    balances += customer_view.json()["data"]["points_balance"]
        after = await _ledger_by_key(database_url)
        assert all(len(ids) == 1 for ids in after.values())
        assert set(after) == set(load.acknowledged) | set(retried)
        assert balances == len(after)
        print(f"re-sent {len(retried)} unanswered keys to a new server: each applied once")


async def test_worker_sigterm_finishes_deliveries_in_flight_and_leaves_the_rest(
    tmp_path: Path,
) -> None:
    events = 100
    in_flight = threading.Event()

    def answer(request: Received) -> Answer:
        in_flight.set()
        return Answer(200, delay_seconds=1)

    async with postgres_database("loyalty_shutdown") as database_url:
        merchant = cli_json(database_url, "merchants", "create", "Shop")
        key = cli_json(
            database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
        )
        headers = {"Authorization": f"Bearer {key['token']}"}
        extra = {**ALLOWED, "LOYALTY_SCHEDULER": "off", "LOYALTY_WEBHOOK_TIMEOUT_SECONDS": "5"}
        with (
            running_receiver() as receiver,
            serve(database_url, tmp_path, workers=1, extra_environment=extra) as server,
        ):
            receiver.answer = answer
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=headers, timeout=60
            ) as client:
                created = await client.post(
                    "/api/v1/webhooks",
                    json={"url": receiver.url(), "event_types": ["customer.created"]},
                )
                endpoint_id = created.json()["data"]["id"]
                for number in range(events):
                    response = await client.post(
                        "/api/v1/public/customers", json={"customer_id": f"c{number}"}
                    )
                    assert response.status_code == 201

                with worker(database_url, tmp_path, "worker-a", extra) as first:
                    assert await asyncio.to_thread(in_flight.wait, 30)
                    elapsed = await asyncio.to_thread(first.terminate)
                    first_returncode = first.process.returncode
                by_first = len(receiver.ids())
                rows = await query(
                    database_url,
                    "SELECT status, count(*) AS n FROM webhook_attempts GROUP BY status",
                )
                statuses_after_first = {row["status"]: row["n"] for row in rows}

                with worker(database_url, tmp_path, "worker-b", extra) as second:
                    deadline = time.monotonic() + 60
                    while len(set(receiver.ids())) < events:
                        assert time.monotonic() < deadline, "worker-b did not deliver the rest"
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(2)  # anything delivered twice would arrive by now
                    second_elapsed = await asyncio.to_thread(second.terminate)
                    second_returncode = second.process.returncode
                log = await client.get(
                    f"/api/v1/webhooks/{endpoint_id}/deliveries", params={"limit": 100}
                )
                statuses = Counter(attempt["status"] for attempt in log.json()["data"])

        ids = receiver.ids()
        print(
            f"\nSIGTERM to loyalty worker with deliveries in flight: exit {first_returncode} "
            f"in {elapsed:.2f} s after delivering {by_first} of {events} (1 s each); deliveries "
            f"then {statuses_after_first}; the next worker delivered the other "
            f"{len(ids) - by_first}, exit {second_returncode} in {second_elapsed:.2f} s; "
            f"{len(ids)} deliveries for {len(set(ids))} events, final {dict(statuses)}"
        )
        assert first_returncode == 0
        assert second_returncode == 0
        assert elapsed < 5 + 5  # the webhook timeout, plus recording
        assert 0 < by_first < events  # stopped mid-way, the rest left to the next worker
        assert statuses_after_first.get("succeeded") == by_first  # each one it sent, recorded
        assert len(ids) == len(set(ids)) == events  # nothing lost, nothing twice
        assert statuses == {"succeeded": events}
