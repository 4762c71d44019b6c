"""The customer list and search (GET /api/v1/customers)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from loyalty.customers import list_repository
from loyalty.db.tables import customers
from tests.support.tenant import Tenant

LIST = "/api/v1/customers"
SORTS = ("-created_at", "created_at", "-points_balance", "points_balance")
PROGRESS_FIELDS = ("next_tier", "amount_to_next_tier")


async def page(tenant: Tenant, token: str | None = None, **params: Any) -> dict[str, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = await tenant.get(LIST, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"data", "next_cursor"}
    return body


async def ids(tenant: Tenant, **params: Any) -> list[str]:
    """Platform ids of every customer listed, following the cursors."""
    return [customer["customer_id"] for customer in await walk(tenant, **params)]


async def walk(tenant: Tenant, cursor: str | None = None, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(100):
        body = await page(tenant, **params, **({"cursor": cursor} if cursor else {}))
        found.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return found
        assert body["data"], "a page before the end is never empty"
    raise AssertionError("the cursors never ended")


def created(customer: dict[str, Any]) -> tuple[datetime, uuid.UUID]:
    moment = datetime.fromisoformat(customer["created_at"].replace("Z", "+00:00"))
    return moment, uuid.UUID(customer["id"])


def by_balance(customer: dict[str, Any]) -> tuple[float, uuid.UUID]:
    return customer["points_balance"], uuid.UUID(customer["id"])


@pytest.fixture(params=["matches_first", "walk"])
def search_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a search is answered: its matches read first (few matches, as in
    these tests), or the list walked in order, each customer tested (many)."""
    if request.param == "walk":
        for shape in list(list_repository.SEARCH_FIRST_MATCHES_MAX):
            monkeypatch.setitem(list_repository.SEARCH_FIRST_MATCHES_MAX, shape, 0)
    return str(request.param)


async def credit(tenant: Tenant, customer_id: str, points: float) -> None:
    response = await tenant.adjust(customer_id, points)
    assert response.status_code == 201, response.text


async def erase_in_database(tenant: Tenant, customer_id: str) -> None:
    """An erased customer as erasure leaves it: no platform id, no personal data."""

    async def work(connection: Any) -> None:
        await connection.execute(
            update(customers)
            .where(
                customers.c.merchant_id == tenant.merchant_id,
                customers.c.external_id == customer_id,
            )
            .values(
                status="erased",
                external_id=None,
                email=None,
                first_name=None,
                last_name=None,
                first_name_search=None,
                last_name_search=None,
            )
        )

    await tenant.database.transaction(work)


async def test_newest_first_as_the_single_customer_read_shows_them(
    tenant: Tenant, unique_id: str
) -> None:
    names = [f"{unique_id}-{n}" for n in range(3)]
    for number, name in enumerate(names):
        await tenant.enrol(name, email=f"{name}@example.com", first_name=f"First{number}")
    await credit(tenant, names[1], 25)
    body = await page(tenant)
    assert [customer["customer_id"] for customer in body["data"]] == names[::-1]
    assert body["next_cursor"] is None
    for listed in body["data"]:
        single = await tenant.customer(listed["customer_id"])
        assert listed == single
    assert body["data"][1]["points_balance"] == 25


async def test_empty_merchant(tenant: Tenant) -> None:
    assert await page(tenant) == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("sort", SORTS)
async def test_every_sort_pages_through_every_customer_once(
    tenant: Tenant, unique_id: str, sort: str
) -> None:
    # Ties in the balance (three at 5, three at 0) are broken by the id.
    balances = [5, 0, 5, 10, 0, 5, 0, 7]
    for number, points in enumerate(balances):
        name = f"{unique_id}-{number}"
        await tenant.enrol(name)
        if points:
            await credit(tenant, name, points)
    everyone = (await page(tenant, limit=100))["data"]
    assert len(everyone) == len(balances)
    key = created if "created_at" in sort else by_balance
    expected = sorted(everyone, key=key, reverse=sort.startswith("-"))
    for limit in (1, 3, 8):
        walked = await walk(tenant, sort=sort, limit=limit)
        assert [customer["id"] for customer in walked] == [
            customer["id"] for customer in expected
        ], limit
    first = await page(tenant, sort=sort, limit=8)
    assert first["next_cursor"] is None
    short = await page(tenant, sort=sort, limit=7)
    assert short["next_cursor"] is not None
    assert (await page(tenant, sort=sort, limit=7, cursor=short["next_cursor"]))["data"] == [
        first["data"][-1]
    ]


async def test_default_sort_is_newest_first_and_limit_defaults_to_20(
    tenant: Tenant, unique_id: str
) -> None:
    for number in range(21):
        await tenant.enrol(f"{unique_id}-{number:02}")
    body = await page(tenant)
    assert len(body["data"]) == 20
    assert body["data"][0]["customer_id"] == f"{unique_id}-20"
    rest = await page(tenant, cursor=body["next_cursor"])
    assert [customer["customer_id"] for customer in rest["data"]] == [f"{unique_id}-00"]
    assert rest["next_cursor"] is None
    explicit = await page(tenant, sort="-created_at")
    assert explicit == body


async def test_customers_enrolled_between_pages_are_neither_repeated_nor_skipped(
    tenant: Tenant, unique_id: str
) -> None:
    for number in range(4):
        await tenant.enrol(f"{unique_id}-{number}")
    first = await page(tenant, sort="created_at", limit=2)
    await tenant.enrol(f"{unique_id}-late")
    rest = await walk(tenant, sort="created_at", limit=2, cursor=first["next_cursor"])
    listed = [customer["customer_id"] for customer in first["data"] + rest]
    assert listed == [f"{unique_id}-{n}" for n in range(4)] + [f"{unique_id}-late"]


async def test_status_filter_and_erased_customers(
    tenant: Tenant, unique_id: str, search_way: str
) -> None:
    statuses = ["active", "inactive", "excluded", "excluded_by_customer", "active"]
    for number, status in enumerate(statuses):
        name = f"{unique_id}-{number}"
        await tenant.enrol(name, email=f"{name}@example.com")
        if status != "active":
            response = await tenant.client.patch(
                "/api/v1/public/customers/status",
                params={"customer_id": name},
                json={"status": status},
                headers=tenant.headers,
            )
            assert response.status_code == 200, response.text
    await tenant.enrol(f"{unique_id}-gone", email="gone@example.com")
    erased_id = (await tenant.customer(f"{unique_id}-gone"))["id"]
    await erase_in_database(tenant, f"{unique_id}-gone")

    everyone = await walk(tenant, sort="created_at")
    assert [customer["customer_id"] for customer in everyone] == [
        f"{unique_id}-{n}" for n in range(5)
    ]
    for status in ("active", "inactive", "excluded", "excluded_by_customer"):
        expected = [f"{unique_id}-{n}" for n, s in enumerate(statuses) if s == status]
        assert await ids(tenant, status=status, sort="created_at", limit=1) == expected
    erased = await walk(tenant, status="erased")
    assert [(c["id"], c["status"], c["email"]) for c in erased] == [(erased_id, "erased", None)]
    # The erased customer's former data finds nothing.
    assert await ids(tenant, search="gone@") == []
    assert await ids(tenant, search="gone@", status="erased") == []


async def test_tier_filter(tenant: Tenant, unique_id: str) -> None:
    response = await tenant.post("/api/v1/tiers", json={"name": "Gold", "threshold": 100})
    assert response.status_code == 201, response.text
    gold = response.json()["data"]["id"]
    for number in range(3):
        await tenant.enrol(f"{unique_id}-{number}")
    await credit(tenant, f"{unique_id}-0", 150)
    await credit(tenant, f"{unique_id}-2", 100)
    await credit(tenant, f"{unique_id}-1", 50)
    listed = await walk(tenant, tier_id=gold, sort="-points_balance")
    assert [customer["customer_id"] for customer in listed] == [
        f"{unique_id}-0",
        f"{unique_id}-2",
    ]
    assert {customer["tier"]["name"] for customer in listed} == {"Gold"}
    # The list carries no tier progress; everything else is the single read.
    single = await tenant.customer(f"{unique_id}-0")
    for field in PROGRESS_FIELDS:
        assert listed[0][field] is None
        single.pop(field)
        listed[0].pop(field)
    assert listed[0] == single
    assert await ids(tenant, tier_id=gold, status="inactive") == []
    assert await ids(tenant, tier_id=str(uuid.uuid4())) == []


async def test_search_by_platform_id_email_and_names(tenant: Tenant, search_way: str) -> None:
    await tenant.enrol("1001", email="ada@x.com", first_name="Ada", last_name="Lovelace")
    await tenant.enrol("10011", email="bob@example.com", first_name="Bob", last_name="Adams")
    await tenant.enrol("2002", email="lada@example.com", first_name="Émile", last_name="Zola")
    await tenant.enrol("ABC-7", email="carol@adamant.org", first_name="carol")

    async def search(term: str) -> set[str]:
        return set(await ids(tenant, search=term))

    # The platform id matches exactly, never by prefix.
    assert await search("1001") == {"1001"}
    assert await search("100") == set()
    assert await search("abc-7") == set()
    assert await search("ABC-7") == {"ABC-7"}
    # Email, first and last names by prefix, whatever the case.
    assert await search("ADA") == {"1001", "10011"}
    assert await search("ada@") == {"1001"}
    assert await search("Ada@X.COM") == {"1001"}
    assert await search("adam") == {"10011"}
    assert await search("lad") == {"2002"}
    assert await search("ÉMI") == {"2002"}
    assert await search("émile") == {"2002"}
    assert await search("CAROL") == {"ABC-7"}
    assert await search("  zol  ") == {"2002"}
    # A prefix, not a substring.
    assert await search("ovelace") == set()
    assert await search("example.com") == set()
    # Blank: no search.
    assert len(await search("   ")) == 4
    assert len(await search("")) == 4


async def test_search_composes_with_filters_sorts_and_pages(
    tenant: Tenant, unique_id: str, search_way: str
) -> None:
    response = await tenant.post("/api/v1/tiers", json={"name": "Gold", "threshold": 20})
    assert response.status_code == 201, response.text
    gold = response.json()["data"]["id"]
    for number in range(7):
        await tenant.enrol(f"{unique_id}-{number}", last_name=f"Smith{number}")
        await credit(tenant, f"{unique_id}-{number}", 10 * (number % 3) + 1)
    await tenant.enrol(f"{unique_id}-x", last_name="Jones")
    await credit(tenant, f"{unique_id}-x", 50)
    everyone = await walk(tenant, search="smith", limit=100)
    assert len(everyone) == 7
    for sort in SORTS:
        walked = await walk(tenant, search="SMITH", sort=sort, limit=2)
        key = created if "created_at" in sort else by_balance
        expected = sorted(everyone, key=key, reverse=sort.startswith("-"))
        assert [c["id"] for c in walked] == [c["id"] for c in expected]
    assert await ids(tenant, search="smith", status="inactive") == []
    in_gold = await ids(tenant, search="smith", tier_id=gold, sort="created_at", limit=1)
    assert in_gold == [f"{unique_id}-{n}" for n in (2, 5)]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("a_", {"a_b"}),
        ("a%", {"a%b"}),
        ("%", {"%pct"}),
        ("_", {"_under"}),
        ("a\\", {"a\\b"}),
        ("a_b@", {"a_b"}),
    ],
)
async def test_like_metacharacters_match_literally(
    tenant: Tenant, term: str, expected: set[str], search_way: str
) -> None:
    await tenant.enrol("a_b", email="a_b@example.com")
    await tenant.enrol("axb", email="axb@example.com", first_name="Axb")
    await tenant.enrol("a%b", first_name="A%b")
    await tenant.enrol("%pct", last_name="%pct")
    await tenant.enrol("_under", last_name="_Under")
    await tenant.enrol("a\\b", first_name="A\\b")
    assert set(await ids(tenant, search=term)) == expected


async def test_other_merchants_customers_are_never_listed(
    tenant: Tenant, other_tenant: Tenant, unique_id: str, search_way: str
) -> None:
    await tenant.enrol(f"{unique_id}-mine", email="shared@example.com", first_name="Ada")
    await other_tenant.enrol(f"{unique_id}-theirs", email="shared@example.com", first_name="Ada")
    await other_tenant.enrol(unique_id, first_name="Ada")
    for params in ({}, {"search": "ada"}, {"search": "shared"}, {"sort": "-points_balance"}):
        assert await ids(tenant, **params) == [f"{unique_id}-mine"], params
    assert await ids(tenant, search=unique_id) == []
    theirs = await ids(other_tenant, search="ADA")
    assert sorted(theirs) == sorted([f"{unique_id}-theirs", unique_id])


async def test_scope(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    writer = await tenant.new_key("customers:write,transactions:read")
    response = await tenant.get(LIST, headers={"Authorization": f"Bearer {writer}"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    reader = await tenant.new_key("customers:read")
    assert [c["customer_id"] for c in (await page(tenant, token=reader))["data"]] == [unique_id]
    assert (await tenant.client.get(LIST)).status_code == 401


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "deleted"}, "status"),
        ({"status": ""}, "status"),
        ({"tier_id": "gold"}, "tier_id"),
        ({"tier_id": "1234"}, "tier_id"),
        ({"sort": "name"}, "sort"),
        ({"sort": "points_balance,created_at"}, "sort"),
        ({"sort": "+created_at"}, "sort"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": "Zm9v"}, "cursor"),
        ({"cursor": _cursor("cd:2026-01-01T00:00:00+00:00")}, "cursor"),
        ({"cursor": _cursor("cd:2026-01-01T00:00:00|" + str(uuid.uuid4()))}, "cursor"),
        ({"cursor": _cursor("bd:-1|" + str(uuid.uuid4()))}, "cursor"),
        ({"cursor": _cursor("bd:12|nope")}, "cursor"),
        ({"cursor": _cursor("s:12")}, "cursor"),
        ({"cursor": "x" * 201}, "cursor"),
        ({"search": "a" * 256}, "search"),
        ({"search": "ada\x00"}, "search"),
        ({"search": "ad\x01a"}, "search"),
    ],
)
async def test_bad_parameters_are_422_naming_the_field(
    tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = await tenant.get(LIST, params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == [field]


@pytest.mark.parametrize(("sort", "other"), [(s, o) for s in SORTS for o in SORTS if s != o])
async def test_a_cursor_belongs_to_its_sort(
    tenant: Tenant, unique_id: str, sort: str, other: str
) -> None:
    for number in range(3):
        await tenant.enrol(f"{unique_id}-{number}")
    cursor = (await page(tenant, sort=sort, limit=1))["next_cursor"]
    assert cursor is not None
    assert (await page(tenant, sort=sort, limit=1, cursor=cursor))["data"]
    response = await tenant.get(LIST, params={"sort": other, "cursor": cursor})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["cursor"]


async def test_openapi_documents_the_list(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/api/v1/customers"]["get"]
    assert operation["security"] == [{"BearerAuth": []}]
    assert operation["tags"] == ["Customers"]
    assert {"200", "401", "403", "422", "429"} <= set(operation["responses"])
    parameters = {parameter["name"] for parameter in operation["parameters"]}
    assert parameters == {"search", "status", "tier_id", "sort", "cursor", "limit"}
    schema = document["components"]["schemas"]["CustomerPage"]
    assert set(schema["properties"]) == {"data", "next_cursor"}
