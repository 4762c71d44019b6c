"""Enrolment (upsert by platform id) and look-up."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.ledger import ledger_count
from tests.support.tenant import Tenant, event_types

CUSTOMERS = "/api/v1/public/customers"
BALANCE_FIELDS = (
    "points_balance",
    "pending_points",
    "lifetime_points",
    "points_spent",
    "points_expired",
    "store_credit_balance",
    "expiring_points",
)


async def test_enrol_creates_then_updates(tenant: Tenant, unique_id: str) -> None:
    response = await tenant.post(
        CUSTOMERS,
        json={
            "customer_id": unique_id,
            "email": "  Ada.Lovelace@Example.COM ",
            "first_name": "<b>Ada</b>",
            "last_name": "Lovelace",
            "date_of_birth": "1990-12-10",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["customer_id"] == unique_id
    assert created["email"] == "ada.lovelace@example.com"
    assert created["first_name"] == "Ada"
    assert created["date_of_birth"] == "1990-12-10"
    assert created["status"] == "active"
    assert created["tier"] is None
    assert created["points_expire_at"] is None
    for field in BALANCE_FIELDS:
        assert created[field] == 0

    response = await tenant.post(CUSTOMERS, json={"customer_id": unique_id, "last_name": "Byron"})
    assert response.status_code == 200
    updated = response.json()["data"]
    assert updated["id"] == created["id"]
    assert updated["last_name"] == "Byron"
    assert updated["first_name"] == "Ada"  # fields not sent are kept
    assert updated["email"] == "ada.lovelace@example.com"

    response = await tenant.post(CUSTOMERS, json={"customer_id": unique_id, "email": None})
    assert response.status_code == 200
    assert response.json()["data"]["email"] is None


async def test_enrolment_moves_no_points_and_writes_events(tenant: Tenant, unique_id: str) -> None:
    customer = await tenant.enrol(unique_id)
    await tenant.enrol(unique_id, first_name="Again")
    assert await ledger_count(tenant) == 0
    assert await event_types(tenant) == ["customer.created", "customer.updated"]
    assert customer["points_balance"] == 0


async def test_get_by_id_and_by_email(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    by_id = await tenant.get(CUSTOMERS, params={"customer_id": unique_id})
    by_email = await tenant.get(
        CUSTOMERS, params={"customer_email": f"{unique_id.upper()}@EXAMPLE.com"}
    )
    assert by_id.status_code == by_email.status_code == 200
    assert by_id.json() == by_email.json()


async def test_unknown_customer_is_404(tenant: Tenant) -> None:
    response = await tenant.get(CUSTOMERS, params={"customer_id": "nobody"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"
    response = await tenant.get(CUSTOMERS, params={"customer_email": "nobody@example.com"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "params",
    [{}, {"customer_id": "1", "customer_email": "a@example.com"}, {"customer_email": "nope"}],
)
async def test_lookup_needs_exactly_one_valid_identifier(
    tenant: Tenant, params: dict[str, str]
) -> None:
    response = await tenant.get(CUSTOMERS, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"][0]["location"] == "query"


async def test_email_belongs_to_one_customer(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(f"{unique_id}-a", email=f"{unique_id}@example.com")
    response = await tenant.post(
        CUSTOMERS, json={"customer_id": f"{unique_id}-b", "email": f"{unique_id}@EXAMPLE.com"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "customer_email_taken"
    missing = await tenant.get(CUSTOMERS, params={"customer_id": f"{unique_id}-b"})
    assert missing.status_code == 404  # nothing half-written


async def test_a_control_character_in_an_email_lookup_is_422(tenant: Tenant) -> None:
    """Found by fuzzing: a NUL byte reached Postgres (which refuses it in text) as a 500."""
    response = await tenant.client.patch(
        f"{CUSTOMERS}/status",
        params={"customer_email": "\x00a@example.com"},
        json={"status": "active"},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "customer_email"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer_id": "x" * 256}, "customer_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "   "}, "customer_id"),
        ({"customer_id": "a\x00b"}, "customer_id"),
        ({"customer_id": 123}, "customer_id"),
        ({}, "customer_id"),
        ({"customer_id": "ok", "email": "not-an-email"}, "email"),
        ({"customer_id": "ok", "email": "a\x00b@example.com"}, "email"),
        ({"customer_id": "ok", "email": "a@" + "b" * 260 + ".com"}, "email"),
        ({"customer_id": "ok", "first_name": "x" * 101}, "first_name"),
        ({"customer_id": "ok", "date_of_birth": "2999-01-01"}, "date_of_birth"),
        ({"customer_id": "ok", "date_of_birth": "10/12/1990"}, "date_of_birth"),
        ({"customer_id": "ok", "unknown": 1}, "unknown"),
    ],
)
async def test_bad_enrolment_is_422_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    response = await tenant.post(CUSTOMERS, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [item["field"] for item in error["details"]] == [field]


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"customer_id": "1",}', b"\xff\xfe"])
async def test_malformed_json_is_400(tenant: Tenant, body: bytes) -> None:
    response = await tenant.post(
        CUSTOMERS, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_body_must_be_an_object(tenant: Tenant) -> None:
    for body in (b"[]", b"42", b"null", b""):
        response = await tenant.post(
            CUSTOMERS, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
