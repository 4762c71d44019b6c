"""The events feed: every event once, in sequence order, never skipping one
that commits after a later one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from loyalty.auth.tokens import token_prefix
from loyalty.db.engine import Database, driver_url
from loyalty.ids import new_id
from tests.support.tenant import Tenant


async def read_all(
    tenant: Tenant, cursor: str | None = None, **params: Any
) -> tuple[list[Any], str]:
    """Follow next_cursor until has_more is false."""
    seen: list[Any] = []
    while True:
        query = {"limit": 100, **params, **({"cursor": cursor} if cursor else {})}
        response = await tenant.get("/api/v1/events", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += body["data"]
        cursor = body["next_cursor"]
        assert isinstance(cursor, str)
        if not body["has_more"]:
            return seen, cursor


async def test_the_feed_serves_events_in_sequence_with_their_object(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    await tenant.adjust(unique_id, 25)
    first = await tenant.get("/api/v1/events", params={"limit": 1})
    assert first.status_code == 200
    page = first.json()
    assert page["has_more"] is True
    [event] = page["data"]
    assert set(event) == {"id", "type", "timestamp", "sequence", "customer_id", "data", "actor"}
    assert (event["type"], event["sequence"], event["customer_id"]) == (
        "customer.created",
        1,
        unique_id,
    )
    # Who caused it: the key that enrolled the customer (its prefix, never the token).
    assert event["actor"] == f"api_key:{token_prefix(tenant.token)}"
    assert event["data"]["customer"]["customer_id"] == unique_id
    rest, cursor = await read_all(tenant, page["next_cursor"])
    assert [(e["type"], e["sequence"]) for e in rest] == [("transaction.created", 2)]
    assert rest[0]["data"]["transaction"]["points"] == 25
    assert rest[0]["actor"] == rest[0]["data"]["transaction"]["actor"] == event["actor"]
    # Polling later with the cursor returns only what came after.
    again = await tenant.get("/api/v1/events", params={"cursor": cursor})
    assert again.json() == {"data": [], "next_cursor": cursor, "has_more": False}
    await tenant.adjust(unique_id, -5)
    newer, _ = await read_all(tenant, cursor)
    assert [(e["type"], e["sequence"]) for e in newer] == [("transaction.created", 3)]


async def test_filters_by_type_and_customer(tenant: Tenant, unique_id: str) -> None:
    other = f"{unique_id}-b"
    for customer in (unique_id, other):
        await tenant.enrol(customer)
        await tenant.adjust(customer, 10)
    by_type, _ = await read_all(tenant, type="transaction.created")
    assert [e["customer_id"] for e in by_type] == [unique_id, other]
    both, _ = await read_all(tenant, type="customer.created,transaction.created")
    assert len(both) == 4
    repeated = await tenant.client.get(
        "/api/v1/events?type=customer.created&type=transaction.created", headers=tenant.headers
    )
    assert len(repeated.json()["data"]) == 4
    mine, cursor = await read_all(tenant, customer_id=other)
    assert [e["type"] for e in mine] == ["customer.created", "transaction.created"]
    # A filtered reader's cursor moves past what did not match.
    nothing_new = await tenant.get(
        "/api/v1/events", params={"cursor": cursor, "customer_id": unique_id}
    )
    assert nothing_new.json()["data"] == []


async def test_other_merchants_events_are_never_served(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await other_tenant.enrol(unique_id)
    events, _ = await read_all(tenant)
    assert events == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "transaction.nope"}, "type"),
        ({"type": "customer.created,bogus"}, "type"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "cDoxMjM"}, "cursor"),  # another list's cursor
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    tenant: Tenant, params: dict[str, Any], field: str
) -> None:
    response = await tenant.get("/api/v1/events", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field


async def test_concurrent_writers_and_a_reader_see_every_event_once_in_order(
    tenant: Tenant, unique_id: str
) -> None:
    """Writers commit while a reader follows the feed: at the end the reader has
    seen every event exactly once, numbered 1..N without a gap."""
    customers = [f"{unique_id}-{n}" for n in range(8)]
    for customer in customers:
        await tenant.enrol(customer)
    seen: list[Any] = []
    cursor: str | None = None
    writing = True

    async def write() -> None:
        nonlocal writing
        try:
            for round_ in range(10):
                results = await asyncio.gather(
                    *(tenant.adjust(customer, round_ + 1) for customer in customers)
                )
                assert all(r.status_code == 201 for r in results)
        finally:
            writing = False

    async def read() -> None:
        nonlocal cursor
        while writing:
            page, cursor = await read_all(tenant, cursor)
            seen.extend(page)
            await asyncio.sleep(0)

    await asyncio.gather(write(), read())
    page, cursor = await read_all(tenant, cursor)
    seen.extend(page)
    assert [e["sequence"] for e in seen] == list(range(1, len(customers) * 11 + 1))
    assert len({e["id"] for e in seen}) == len(seen)


async def test_an_event_that_commits_late_is_not_skipped(
    tenant: Tenant, database: Database, unique_id: str
) -> None:
    """An event inserted first but committed last (an overlapping batch, another
    process) comes after what the reader has already seen; a feed paging on
    the event id would have skipped it (its id is older than the last one seen)."""
    if database.is_sqlite:
        pytest.skip("SQLite serialises writers: a transaction cannot commit under another")
    await tenant.enrol(unique_id)
    _, cursor = await read_all(tenant)
    late_id = new_id()
    connection = await asyncpg.connect(driver_url(database.url))
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "INSERT INTO events (merchant_id, id, type, subject_id, payload, customer_ref,"
            " created_at) VALUES ($1, $2, 'customer.updated', NULL, '{}', $3, now())",
            tenant.merchant_id,
            late_id,
            unique_id,
        )
        # Meanwhile another writer commits a later event, and the reader reads it.
        await tenant.adjust(unique_id, 7)
        before, cursor = await read_all(tenant, cursor)
        assert [e["type"] for e in before] == ["transaction.created"]
        last_seen = uuid.UUID(before[-1]["id"])
        assert late_id < last_seen  # a cursor on the id would now be past it
        await transaction.commit()
    finally:
        await connection.close()
    after, _ = await read_all(tenant, cursor)
    assert [(e["id"], e["sequence"]) for e in after] == [(str(late_id), before[-1]["sequence"] + 1)]
