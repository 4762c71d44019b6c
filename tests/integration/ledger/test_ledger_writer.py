"""The batching ledger writer, driven directly (both databases).

A writer with a long batch wait makes movements submitted together land in
one batch, so each test states exactly which movements shared a transaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import CustomerRef
from loyalty.db.engine import Database
from loyalty.db.tables import customers
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.writer import LedgerWriter
from loyalty.merchants import repository as merchants_repository
from tests.support.ledger import check_ledger_invariants
from tests.support.tenant import Tenant

BATCH_WAIT_MS = 100


@pytest.fixture
async def writer(database: Database) -> AsyncIterator[LedgerWriter]:
    writer = LedgerWriter(database, batch_wait_ms_max=BATCH_WAIT_MS)
    await writer.start()
    yield writer
    await writer.stop()


def movement(
    tenant: Tenant,
    customer_id: str,
    points: int,
    *,
    key: str | None = None,
    fingerprint: str = "f",
    description: str | None = None,
    points_minor: int | None = None,
) -> Movement:
    return Movement(
        merchant_id=tenant.merchant_id,
        operation=Adjust(
            customer=CustomerRef(customer_id=customer_id),
            points_minor=points * 100 if points_minor is None else points_minor,
            kind="adjustment",
            description=description,
            apply_to_lifetime=points > 0,
        ),
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )


async def submit_together(writer: LedgerWriter, movements: list[Movement]) -> list[Outcome]:
    """Submit in this order, all before the batch closes; wait for every outcome."""
    batches_before = writer.batches_committed
    tasks = [asyncio.create_task(writer.submit(item)) for item in movements]
    outcomes = await asyncio.gather(*tasks)
    assert writer.batches_committed == batches_before + 1, "expected exactly one batch"
    return list(outcomes)


def body(outcome: Outcome) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(outcome.body)
    return decoded


async def test_each_movement_is_decided_alone_in_a_batch(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 10)
    outcomes = await submit_together(
        writer,
        [
            movement(tenant, unique_id, 5),
            movement(tenant, unique_id, -20),  # 15 available: refused alone
            movement(tenant, unique_id, -15),  # exactly the balance
            movement(tenant, unique_id, -1),  # nothing left
            movement(tenant, "nobody-" + unique_id, 3),  # unknown customer
            movement(tenant, unique_id, 7),
        ],
    )
    assert [outcome.status_code for outcome in outcomes] == [201, 422, 201, 422, 404, 201]
    assert body(outcomes[1])["error"]["details"] == {"points_balance": 15, "points_requested": 20}
    assert body(outcomes[4])["error"]["code"] == "customer_not_found"
    assert [body(o)["data"]["points_balance"] for o in outcomes if o.status_code == 201] == [
        15,
        0,
        7,
    ]
    balance_minor, entries = await check_ledger_invariants(tenant, unique_id)
    assert (balance_minor, entries) == (700, 4)


async def test_duplicate_keys_inside_one_batch(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    outcomes = await submit_together(
        writer,
        [
            movement(tenant, unique_id, 10, key="k1", fingerprint="a"),
            movement(tenant, unique_id, 10, key="k1", fingerprint="a"),
            movement(tenant, unique_id, 99, key="k1", fingerprint="b"),  # other request
            movement(tenant, unique_id, 10, key="k1", fingerprint="a"),
            movement(tenant, unique_id, 1, key="k2", fingerprint="a"),
        ],
    )
    assert [o.status_code for o in outcomes] == [201, 201, 422, 201, 201]
    assert [o.replayed for o in outcomes] == [False, True, False, True, False]
    assert outcomes[0].body == outcomes[1].body == outcomes[3].body
    assert body(outcomes[2])["error"]["code"] == "idempotency_key_reused"
    assert await check_ledger_invariants(tenant, unique_id) == (1100, 2)


async def test_duplicate_keys_across_batches(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    first = await submit_together(writer, [movement(tenant, unique_id, -5, key="debit")])
    assert first[0].status_code == 422  # nothing to debit yet: stored and replayed
    await submit_together(writer, [movement(tenant, unique_id, 50, key="credit")])
    again = await submit_together(
        writer,
        [
            movement(tenant, unique_id, -5, key="debit"),
            movement(tenant, unique_id, 50, key="credit"),
            movement(tenant, unique_id, 50, key="credit", fingerprint="other"),
        ],
    )
    assert [(o.status_code, o.replayed) for o in again] == [(422, True), (201, True), (422, False)]
    assert again[0].body == first[0].body
    assert await check_ledger_invariants(tenant, unique_id) == (5000, 1)


async def test_replays_share_a_batch_with_new_movements_and_need_no_customer(
    writer: LedgerWriter, tenant: Tenant, unique_id: str, database: Database
) -> None:
    """A replay answers its stored reply whether its customer is still named so or has
    been renamed since (the reply needs no customer); the new movements of the same
    batch apply, and the replays move nothing again."""
    kept, renamed, fresh = f"{unique_id}-kept", f"{unique_id}-renamed", f"{unique_id}-fresh"
    for customer in (kept, renamed, fresh):
        await tenant.enrol(customer)
    first = await submit_together(
        writer,
        [movement(tenant, kept, 20, key="kept"), movement(tenant, renamed, 30, key="renamed")],
    )
    assert [o.status_code for o in first] == [201, 201]

    async def rename(connection: AsyncConnection) -> None:
        await connection.execute(
            update(customers)
            .where(customers.c.merchant_id == tenant.merchant_id)
            .where(customers.c.external_id == renamed)
            .values(external_id=f"{unique_id}-elsewhere")
        )

    await database.transaction(rename)
    again = await submit_together(
        writer,
        [
            movement(tenant, kept, 20, key="kept"),
            movement(tenant, fresh, 7, key="fresh"),
            movement(tenant, renamed, 30, key="renamed"),
            movement(tenant, kept, 1),
        ],
    )
    assert [(o.status_code, o.replayed) for o in again] == [
        (201, True), (201, False), (201, True), (201, False),
    ]  # fmt: skip
    assert (again[0].body, again[2].body) == (first[0].body, first[1].body)
    assert await check_ledger_invariants(tenant, kept) == (2100, 2)
    assert await check_ledger_invariants(tenant, fresh) == (700, 1)
    assert await check_ledger_invariants(tenant, f"{unique_id}-elsewhere") == (3000, 1)


async def test_order_per_customer_is_arrival_order(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    await submit_together(
        writer,
        [movement(tenant, unique_id, 1, description=f"move {n}") for n in range(1, 41)],
    )
    for n in range(41, 46):  # and across batches
        await submit_together(writer, [movement(tenant, unique_id, 1, description=f"move {n}")])
    response = await tenant.get(
        "/api/v1/public/customers/transactions", params={"customer_id": unique_id, "limit": 100}
    )
    entries = response.json()["data"]
    assert [entry["description"] for entry in reversed(entries)] == [
        f"move {n}" for n in range(1, 46)
    ]
    assert [entry["sequence"] for entry in reversed(entries)] == list(range(1, 46))


async def test_precision_refusal_releases_the_key(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    # 1.5 points in a programme without decimals: a validation error, not stored.
    refused = await submit_together(
        writer, [movement(tenant, unique_id, 1, key="k", points_minor=150)]
    )
    assert refused[0].status_code == 422
    assert body(refused[0])["error"]["details"][0]["field"] == "points"
    accepted = await submit_together(writer, [movement(tenant, unique_id, 2, key="k")])
    assert (accepted[0].status_code, accepted[0].replayed) == (201, False)

    async def allow_decimals(connection: AsyncConnection) -> None:
        await merchants_repository.set_points_decimals(
            connection, tenant.merchant_id, 1, datetime.now(UTC)
        )

    await tenant.database.transaction(allow_decimals)
    fractional = await submit_together(writer, [movement(tenant, unique_id, 1, points_minor=150)])
    assert body(fractional[0])["data"]["points"] == 1.5


async def test_many_clients_on_one_customer(
    writer: LedgerWriter, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 100)
    outcomes = await asyncio.gather(
        *(writer.submit(movement(tenant, unique_id, -1)) for _ in range(128))
    )
    assert sorted(o.status_code for o in outcomes) == [201] * 100 + [422] * 28
    assert await check_ledger_invariants(tenant, unique_id) == (0, 101)


@pytest.mark.postgres_only
async def test_a_failing_movement_does_not_sink_its_batch(
    writer: LedgerWriter, tenant: Tenant, unique_id: str, database: Database
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite does not enforce VARCHAR lengths, so this movement cannot fail")
    await tenant.enrol(unique_id)
    # Bypass the request validation: the database refuses a 600-character description.
    poison = movement(tenant, unique_id, 1, description="x" * 600)
    tasks = [
        asyncio.create_task(writer.submit(item))
        for item in (movement(tenant, unique_id, 3), poison, movement(tenant, unique_id, 4))
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], Outcome)
    assert results[0].status_code == 201
    assert isinstance(results[1], Exception)
    assert isinstance(results[2], Outcome)
    assert results[2].status_code == 201
    assert await check_ledger_invariants(tenant, unique_id) == (700, 2)


async def test_stop_finishes_queued_movements(database: Database, tenant: Tenant) -> None:
    customer_id = uuid.uuid4().hex[:12]
    await tenant.enrol(customer_id)
    writer = LedgerWriter(database, batch_wait_ms_max=BATCH_WAIT_MS)
    await writer.start()
    tasks = [asyncio.create_task(writer.submit(movement(tenant, customer_id, 1))) for _ in range(5)]
    await asyncio.sleep(0)
    await writer.stop()
    assert [task.result().status_code for task in tasks] == [201] * 5
    with pytest.raises(Exception, match="shutting down"):
        await writer.submit(movement(tenant, customer_id, 1))


@pytest.mark.postgres_only
async def test_a_key_used_meanwhile_by_another_process_answers_its_reply(
    writer: LedgerWriter, tenant: Tenant, unique_id: str, database: Database
) -> None:
    """A retry reaching another process while the first request's transaction is still
    open: the batch reads no reply under the key, plans the movement, then its insert of
    the key waits for that transaction and finds the key taken when it commits; the batch
    is planned again (``KeyTakenMeanwhile``, transient) and answers with the stored reply,
    moving nothing, while the other movement of the same batch still applies once."""
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: no transaction can commit under another")
    await tenant.enrol(unique_id)
    reply = b'{"data":{"from":"the other process"}}'
    assert database.raw_pool is not None
    async with database.raw_pool.acquire() as other:
        other_transaction = other.transaction()
        await other_transaction.start()
        await other.execute(
            "INSERT INTO idempotency_keys (merchant_id, key, request_fingerprint,"
            " response_status, response_body, created_at) VALUES ($1, 'retried', 'f', 201, $2,"
            " now())",
            tenant.merchant_id,
            reply.decode(),
        )
        tasks = [
            asyncio.create_task(writer.submit(movement(tenant, unique_id, 7, key="retried"))),
            asyncio.create_task(writer.submit(movement(tenant, unique_id, 2, key="bystander"))),
        ]
        await asyncio.sleep(BATCH_WAIT_MS / 1000 + 0.3)  # the batch waits on the key's row
        assert not any(task.done() for task in tasks)
        await other_transaction.commit()
        retried, bystander = await asyncio.gather(*tasks)
    assert (retried.status_code, retried.body, retried.replayed) == (201, reply, True)
    assert (bystander.status_code, bystander.replayed) == (201, False)
    assert await check_ledger_invariants(tenant, unique_id) == (200, 1)


async def test_a_customer_renamed_while_the_batch_waits_for_its_lock_is_not_found_by_the_old_id(
    writer: LedgerWriter, tenant: Tenant, unique_id: str, database: Database
) -> None:
    """Another transaction changes the customer's platform id and holds the row while a
    batch naming the customer by its old id waits for the lock: once the rename commits,
    the old id names nobody (404, nothing moved), and the other movement of the batch
    still applies."""
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: no transaction can commit under another")
    renamed, bystander = f"{unique_id}-old", f"{unique_id}-other"
    await tenant.enrol(renamed)
    await tenant.enrol(bystander)
    assert database.raw_pool is not None
    async with database.raw_pool.acquire() as other:
        other_transaction = other.transaction()
        await other_transaction.start()
        await other.execute(
            "UPDATE customers SET external_id = $3 WHERE merchant_id = $1 AND external_id = $2",
            tenant.merchant_id,
            renamed,
            f"{unique_id}-new",
        )
        tasks = [
            asyncio.create_task(writer.submit(movement(tenant, renamed, 5))),
            asyncio.create_task(writer.submit(movement(tenant, bystander, 3))),
        ]
        await asyncio.sleep(BATCH_WAIT_MS / 1000 + 0.3)  # the batch waits on the row lock
        assert not any(task.done() for task in tasks)
        await other_transaction.commit()
        by_old_id, other_customer = await asyncio.gather(*tasks)
    assert by_old_id.status_code == 404
    assert other_customer.status_code == 201
    assert await check_ledger_invariants(tenant, f"{unique_id}-new") == (0, 0)
    assert await check_ledger_invariants(tenant, bystander) == (300, 1)
