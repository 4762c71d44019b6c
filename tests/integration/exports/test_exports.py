"""CSV exports over HTTP: columns, order, formula safety, periods, errors, streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from litestar import Litestar
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth.tokens import token_prefix
from loyalty.db.tables import customers, ledger_entries
from loyalty.exports import service
from tests.support.tenant import Tenant

CUSTOMERS_CSV = "/api/v1/exports/customers.csv"
TRANSACTIONS_CSV = "/api/v1/exports/transactions.csv"


def parse(body: bytes) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(body.decode(), newline=""))
    header = next(reader)
    return [dict(zip(header, row, strict=True)) for row in reader]


async def download(tenant: Tenant, path: str, **params: str) -> list[dict[str, str]]:
    response = await tenant.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return parse(response.content)


async def set_customer(tenant: Tenant, platform_id: str, **values: Any) -> None:
    async def work(connection: AsyncConnection) -> None:
        await connection.execute(
            update(customers)
            .where(
                customers.c.merchant_id == tenant.merchant_id,
                customers.c.external_id == platform_id,
            )
            .values(**values)
        )

    await tenant.database.transaction(work)


async def set_entry(tenant: Tenant, transaction_id: str, **values: Any) -> None:
    async def work(connection: AsyncConnection) -> None:
        await connection.execute(
            update(ledger_entries)
            .where(
                ledger_entries.c.merchant_id == tenant.merchant_id,
                ledger_entries.c.id == uuid.UUID(transaction_id),
            )
            .values(**values)
        )

    await tenant.database.transaction(work)


async def credit(tenant: Tenant, customer_id: str, points: Any, **extra: Any) -> str:
    response = await tenant.adjust(customer_id, points, **extra)
    assert response.status_code == 201, response.text
    transaction_id: str = response.json()["data"]["transaction_id"]
    return transaction_id


async def test_headers_only_when_there_is_nothing(tenant: Tenant) -> None:
    for path, columns in (
        (CUSTOMERS_CSV, service.CUSTOMER_COLUMNS),
        (TRANSACTIONS_CSV, service.TRANSACTION_COLUMNS),
    ):
        response = await tenant.get(path)
        assert response.status_code == 200
        assert response.content == (",".join(columns) + "\r\n").encode()
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        assert disposition.endswith(".csv")
        assert response.headers["cache-control"] == "no-store"


async def test_customers_with_every_balance(tenant: Tenant, unique_id: str) -> None:
    ada = f"{unique_id}-ada"
    bob = f"{unique_id}-bob"
    created = await tenant.enrol(
        ada,
        email=f"{unique_id}@example.com",
        first_name="Ada",
        last_name="Lovelace, Countess",
        date_of_birth="1990-12-10",
    )
    await tenant.enrol(bob)
    await credit(tenant, ada, 150)
    assert (await tenant.adjust(ada, -50)).status_code == 201
    tier = await tenant.post("/api/v1/tiers", json={"name": "Gold", "threshold": 100})
    assert tier.status_code == 201, tier.text
    api = await tenant.customer(ada)

    rows = await download(tenant, CUSTOMERS_CSV)
    assert list(rows[0]) == list(service.CUSTOMER_COLUMNS)
    assert [row["customer_id"] for row in rows] == [ada, bob]
    row = rows[0]
    assert row == {
        "customer_id": ada,
        "email": f"{unique_id}@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace, Countess",
        "date_of_birth": "1990-12-10",
        "status": "active",
        "points_balance": "100",
        "pending_points": "0",
        "lifetime_points": "150",
        "points_spent": str(api["points_spent"]),
        "points_expired": "0",
        "store_credit_balance": "0",
        "tier": api["tier"]["name"] if api["tier"] else "",
        "total_spent": "0",
        "created_at": created["created_at"],
    }
    assert rows[1]["email"] == rows[1]["first_name"] == rows[1]["tier"] == ""
    assert rows[1]["points_balance"] == "0"


async def test_points_with_decimals_are_written_like_the_api(
    tenant: Tenant, unique_id: str
) -> None:
    response = await tenant.client.patch(
        "/api/v1/settings/program", json={"points_decimals": 2}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    await tenant.enrol(unique_id)
    await credit(tenant, unique_id, 12.5)
    await credit(tenant, unique_id, -0.25)
    [customer] = await download(tenant, CUSTOMERS_CSV)
    assert customer["points_balance"] == "12.25"
    entries = await download(tenant, TRANSACTIONS_CSV)
    assert [(row["points"], row["points_balance"]) for row in entries] == [
        ("12.5", "12.5"),
        ("-0.25", "12.25"),
    ]


async def test_transactions_join_the_customers_file(tenant: Tenant, unique_id: str) -> None:
    first = f"{unique_id}-1"
    second = f"{unique_id}-2"
    await tenant.enrol(first)
    await tenant.enrol(second)
    one = await credit(
        tenant, first, 100, internal_note="Welcome gift", expires_at="2099-01-01T00:00:00Z"
    )
    two = await credit(tenant, second, 30, apply_to_lifetime=False)
    three = await credit(tenant, first, -40)

    rows = await download(tenant, TRANSACTIONS_CSV)
    assert list(rows[0]) == list(service.TRANSACTION_COLUMNS)
    assert [row["transaction_id"] for row in rows] == [one, two, three]
    assert rows[0] == {
        "transaction_id": one,
        "customer_id": first,
        "points": "100",
        "type": "credit",
        "kind": "adjustment",
        "description": "test",
        "internal_note": "Welcome gift",
        "apply_to_lifetime": "true",
        "points_balance": "100",
        "sequence": "1",
        "expires_at": "2099-01-01T00:00:00Z",
        "created_at": rows[0]["created_at"],
        "actor": f"api_key:{token_prefix(tenant.token)}",
    }
    assert datetime.fromisoformat(rows[0]["created_at"]).tzinfo is not None
    assert rows[1]["customer_id"] == second
    assert rows[1]["apply_to_lifetime"] == "false"
    assert rows[2]["points"] == "-40"
    assert rows[2]["type"] == "debit"
    assert rows[2]["points_balance"] == "60"
    assert rows[2]["sequence"] == "2"
    # Every entry's customer_id is a row of the customers export.
    customer_ids = {row["customer_id"] for row in await download(tenant, CUSTOMERS_CSV)}
    assert {row["customer_id"] for row in rows} <= customer_ids


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
async def test_formula_starts_are_escaped_in_text_cells(
    tenant: Tenant, unique_id: str, start: str
) -> None:
    # Set in the database: the API trims leading tabs and line ends.
    await tenant.enrol(unique_id)
    transaction_id = await credit(tenant, unique_id, 10)
    await set_customer(
        tenant,
        unique_id,
        external_id=f"{start}{unique_id}",
        first_name=f"{start}SUM(A1)",
        last_name=f"{start}x",
        email=f"{start}{unique_id}@example.com",
    )
    await set_entry(tenant, transaction_id, description=f"{start}cmd", internal_note=f"{start}n")

    [customer] = await download(tenant, CUSTOMERS_CSV)
    assert customer["customer_id"] == f"'{start}{unique_id}"
    assert customer["first_name"] == f"'{start}SUM(A1)"
    assert customer["last_name"] == f"'{start}x"
    assert customer["email"] == f"'{start}{unique_id}@example.com"
    [entry] = await download(tenant, TRANSACTIONS_CSV)
    assert entry["customer_id"] == f"'{start}{unique_id}"
    assert entry["description"] == f"'{start}cmd"
    assert entry["internal_note"] == f"'{start}n"


async def test_numbers_and_inner_characters_are_not_escaped(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id, first_name="Jean-Luc", last_name="A=B")
    await credit(tenant, unique_id, 80, description="Refund +50 @shop")
    await credit(tenant, unique_id, -50, description="Redeemed")
    [customer] = await download(tenant, CUSTOMERS_CSV)
    assert customer["first_name"] == "Jean-Luc"
    assert customer["last_name"] == "A=B"
    entries = await download(tenant, TRANSACTIONS_CSV)
    assert entries[0]["description"] == "Refund +50 @shop"
    assert entries[1]["points"] == "-50"  # a number, not a formula


async def test_quotes_commas_and_line_breaks_round_trip(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    note = 'Said "thanks",\nthen left'
    await credit(tenant, unique_id, 5, description="a, b", internal_note=note)
    [entry] = await download(tenant, TRANSACTIONS_CSV)
    assert entry["description"] == "a, b"
    assert entry["internal_note"] == note


async def test_erased_customers_keep_their_balances_without_personal_data(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(
        unique_id, email=f"{unique_id}@example.com", first_name="Eve", date_of_birth="1980-01-01"
    )
    await credit(tenant, unique_id, 70)
    await set_customer(tenant, unique_id, status="erased", external_id=None)
    [customer] = await download(tenant, CUSTOMERS_CSV)
    assert customer["status"] == "erased"
    for column in ("customer_id", "email", "first_name", "last_name", "date_of_birth"):
        assert customer[column] == "", column
    assert customer["points_balance"] == "70"
    [entry] = await download(tenant, TRANSACTIONS_CSV)
    assert entry["customer_id"] == ""
    assert entry["points"] == "70"


async def test_other_merchants_data_is_never_included(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(f"{unique_id}-mine")
    await credit(tenant, f"{unique_id}-mine", 10)
    await other_tenant.enrol(f"{unique_id}-theirs")
    await credit(other_tenant, f"{unique_id}-theirs", 20)
    assert [row["customer_id"] for row in await download(tenant, CUSTOMERS_CSV)] == [
        f"{unique_id}-mine"
    ]
    assert [row["points"] for row in await download(tenant, TRANSACTIONS_CSV)] == ["10"]
    assert [row["customer_id"] for row in await download(other_tenant, CUSTOMERS_CSV)] == [
        f"{unique_id}-theirs"
    ]


async def _entries_on(tenant: Tenant, unique_id: str, moments: list[str]) -> list[str]:
    """One credit per moment, with ``created_at`` set to it; their ids in that order."""
    await tenant.enrol(unique_id)
    ids = []
    for number, moment in enumerate(moments, start=1):
        transaction_id = await credit(tenant, unique_id, number)
        await set_entry(tenant, transaction_id, created_at=datetime.fromisoformat(moment))
        ids.append(transaction_id)
    return ids


MOMENTS = [
    "2026-01-31T23:59:59.999999+00:00",
    "2026-02-01T00:00:00+00:00",
    "2026-02-14T12:00:00+00:00",
    "2026-02-28T23:59:59.999999+00:00",
    "2026-03-01T00:00:00+00:00",
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [0, 1, 2, 3, 4]),
        # Dates: since from the start of its day, until to the end of its day.
        ({"since": "2026-02-01", "until": "2026-02-28"}, [1, 2, 3]),
        ({"since": "2026-02-01"}, [1, 2, 3, 4]),
        ({"until": "2026-01-31"}, [0]),
        ({"since": "2026-02-14", "until": "2026-02-14"}, [2]),
        # Timestamps: since inclusive, until exclusive, offsets honoured.
        ({"since": "2026-02-14T12:00:00Z"}, [2, 3, 4]),
        ({"until": "2026-02-14T12:00:00Z"}, [0, 1]),
        ({"since": "2026-02-01T01:00:00+01:00", "until": "2026-03-01T00:00:00Z"}, [1, 2, 3]),
        ({"since": "2026-02-14T12:00:00.000001Z"}, [3, 4]),
    ],
)
async def test_since_and_until(
    tenant: Tenant, unique_id: str, params: dict[str, str], expected: list[int]
) -> None:
    ids = await _entries_on(tenant, unique_id, MOMENTS)
    rows = await download(tenant, TRANSACTIONS_CSV, **params)
    assert [row["transaction_id"] for row in rows] == [ids[index] for index in expected]


async def test_entries_are_ordered_by_creation_not_by_customer(
    tenant: Tenant, unique_id: str
) -> None:
    ids = await _entries_on(
        tenant, unique_id, ["2026-05-03T00:00:00+00:00", "2026-05-01T00:00:00+00:00"]
    )
    rows = await download(tenant, TRANSACTIONS_CSV)
    assert [row["transaction_id"] for row in rows] == [ids[1], ids[0]]
    assert [row["created_at"] for row in rows] == ["2026-05-01T00:00:00Z", "2026-05-03T00:00:00Z"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-30"}, "since"),
        ({"since": "2026-1-5"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no offset
        ({"until": "2026-01-01T25:00:00Z"}, "until"),
        ({"until": "9999-12-31"}, "until"),
        ({"until": "\uff12\uff10\uff12\uff16-01-01"}, "until"),  # full-width digits
        ({"since": "2026-02-01", "until": "2026-01-31"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, "until"),
    ],
)
async def test_bad_periods_are_422_before_any_byte(
    tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = await tenant.get(TRANSACTIONS_CSV, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["field"] == field
    assert error["details"][0]["location"] == "query"


async def test_overlong_period_values_are_422(tenant: Tenant) -> None:
    response = await tenant.get(TRANSACTIONS_CSV, params={"since": "2" * 65})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("path", "scope"), [(CUSTOMERS_CSV, "customers:read"), (TRANSACTIONS_CSV, "transactions:read")]
)
async def test_each_export_needs_its_scope(tenant: Tenant, path: str, scope: str) -> None:
    other = "transactions:read" if scope == "customers:read" else "customers:read"
    token = await tenant.new_key(other)
    response = await tenant.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"] == {"required_scope": scope}
    token = await tenant.new_key(scope)
    response = await tenant.client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    response = await tenant.client.get(path)
    assert response.status_code == 401


async def body_parts(
    app: Litestar, tenant: Tenant, path: str, leave_after: int | None = None
) -> tuple[int, list[bytes]]:
    """The response's status and its body as the app sent it, message by message
    (httpx's ASGI transport would join them); the client goes away after
    ``leave_after`` body messages, or after the last one."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"loyalty.test"),
            (b"authorization", f"Bearer {tenant.token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("loyalty.test", 80),
        "state": {},
    }
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    status = 0
    parts: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False) or len(parts) == leave_after:
                done.set()  # the client goes away

    await asyncio.wait_for(app(cast("Any", scope), cast("Any", receive), cast("Any", send)), 30)
    return status, parts


async def test_more_rows_than_a_chunk_stream_in_order(
    app: Litestar, tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 3)
    names = [f"{unique_id}-{number:02d}" for number in range(10)]
    ids = {name: uuid.UUID((await tenant.enrol(name))["id"]) for name in names}
    # Four with the same creation time: the id breaks the tie, and no row across
    # the chunks' edges is lost or repeated.
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    seconds = [0, 1, 2, 3, 10, 10, 10, 10, 20, 21]
    for name, second in zip(names, seconds, strict=True):
        await set_customer(tenant, name, created_at=start + timedelta(seconds=second))
    transaction_ids = [await credit(tenant, names[0], 1) for _ in range(7)]

    status, chunks = await body_parts(app, tenant, CUSTOMERS_CSV)
    assert status == 200
    # The header, then one body message per chunk of at most 3 rows, then the end.
    assert [len(parse(chunks[0] + chunk)) for chunk in chunks[1:-1]] == [3, 3, 3, 1]
    assert chunks[-1] == b""
    rows = parse(b"".join(chunks))
    exported = [row["customer_id"] for row in rows]
    assert sorted(exported) == sorted(names)
    assert exported[:4] == names[:4]  # created before the tie, oldest first
    assert exported[-2:] == names[8:]  # created after it
    assert exported[4:8] == sorted(names[4:8], key=ids.__getitem__)

    entries = await download(tenant, TRANSACTIONS_CSV)
    assert [row["transaction_id"] for row in entries] == transaction_ids
    assert [row["sequence"] for row in entries] == [str(n) for n in range(1, 8)]


async def test_openapi_says_it_is_csv(tenant: Tenant) -> None:
    document = (await tenant.client.get("/openapi.json")).json()
    for path in (CUSTOMERS_CSV, TRANSACTIONS_CSV):
        operation = document["paths"][path]["get"]
        assert operation["tags"] == ["Exports"]
        assert operation["security"] == [{"BearerAuth": []}]
        assert "text/csv" in operation["responses"]["200"]["content"]
        assert "CSV" in operation["responses"]["200"]["description"]
        assert "Content-Disposition" in operation["responses"]["200"]["headers"]
    parameters = document["paths"][TRANSACTIONS_CSV]["get"]["parameters"]
    assert {parameter["name"] for parameter in parameters} == {"since", "until"}
    assert "422" in document["paths"][TRANSACTIONS_CSV]["get"]["responses"]


async def test_a_client_going_away_releases_the_connection(
    app: Litestar, tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 2)
    for number in range(8):
        await tenant.enrol(f"{unique_id}-{number}")
    pool = tenant.database.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    status, parts = await body_parts(app, tenant, CUSTOMERS_CSV, leave_after=2)
    assert status == 200
    assert 2 <= len(parts) < 6  # stopped before the end
    for _ in range(100):
        if pool.checkedout() == before:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert pool.checkedout() == before  # type: ignore[attr-defined]
    # And the next download is whole.
    rows = await download(tenant, CUSTOMERS_CSV)
    assert len(rows) == 8
