"""Hostile input: every one gets a documented 4xx, never a 500, and moves nothing."""

from __future__ import annotations

import pytest

from tests.support.ledger import TRANSACTIONS, ledger_count
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"customer_id":' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400, "invalid_json"),
        (b'{"customer_id": "\\ud800"}', 400, "invalid_json"),  # lone surrogate
        (b'{"customer_id": "a\\u0000b"}', 422, "validation_error"),
        (b'{"customer_id": "ok", "first_name": "a\\u0007b"}', 422, "validation_error"),
        (b'{"customer_id": "ok", "date_of_birth": "1990-02-30"}', 422, "validation_error"),
        (b'{"customer_id": "ok", "email": "a@b.co\\r\\nBcc: x@y.io"}', 422, "validation_error"),
        (b'\xef\xbb\xbf{"customer_id": "bom"}', 400, "invalid_json"),
        (b'{"customer_id": "a", "customer_id": 5}', 422, "validation_error"),
    ],
)
async def test_hostile_enrolments(tenant: Tenant, body: bytes, status: int, code: str) -> None:
    response = await tenant.post(CUSTOMERS, content=body, headers=JSON)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize(
    "customer_id",
    ["'; DROP TABLE customers; --", "é🙂\u200f", "<script>alert(1)</script>", "1 OR 1=1", "%00"],
)
async def test_strange_but_valid_ids_are_stored_literally(tenant: Tenant, customer_id: str) -> None:
    customer = await tenant.enrol(customer_id)
    assert customer["customer_id"] == customer_id
    assert (await tenant.customer(customer_id))["id"] == customer["id"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b'{"points": 5, "description": "a\\u0000b"}', 422, "description"),
        (
            b'{"points": 5, "description": "ok", "internal_note": "\\u001b[31m"}',
            422,
            "internal_note",
        ),
        (b'{"points": -1e309, "description": "x"}', 422, "body"),  # overflows while decoding
        (b'{"points": 1e-300, "description": "x"}', 422, "points"),
        (b'{"points": 9223372036854775808, "description": "x"}', 422, "points"),
        (b'{"points": 5, "description": "x", "expires_at": "tomorrow"}', 422, "expires_at"),
    ],
)
async def test_hostile_transactions_move_nothing(
    tenant: Tenant, unique_id: str, body: bytes, status: int, field: str
) -> None:
    await tenant.enrol(unique_id)
    response = await tenant.post(
        TRANSACTIONS, params={"customer_id": unique_id}, content=body, headers=JSON
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["details"][0]["field"] == field
    assert await ledger_count(tenant) == 0


async def test_tab_and_newline_are_fine_in_notes(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    response = await tenant.adjust(unique_id, 5, "line one\nline two", internal_note="a\tb")
    assert response.status_code == 201
    assert response.json()["data"]["internal_note"] == "a\tb"


async def test_query_and_header_injection(tenant: Tenant) -> None:
    response = await tenant.get(CUSTOMERS, params={"customer_id": "x\r\nSet-Cookie: a=b"})
    assert response.status_code == 422
    assert "set-cookie" not in response.headers
    response = await tenant.get(CUSTOMERS, params={"customer_id": "1", "limit": "1; DROP"})
    assert response.status_code in (404, 422)
