"""Customer status (PATCH /api/v1/public/customers/status) and what it allows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.rewards import FIVE_OFF, create, funded, redeem
from tests.support.tenant import Tenant, event_types

STATUS = "/api/v1/public/customers/status"


async def set_status(tenant: Tenant, customer_id: str, body: dict[str, Any]) -> httpx.Response:
    return await tenant.client.patch(
        STATUS, params={"customer_id": customer_id}, json=body, headers=tenant.headers
    )


async def test_status_changes_are_kept_and_evented(tenant: Tenant, unique_id: str) -> None:
    customer = await tenant.enrol(unique_id)
    assert (customer["status"], customer["status_reason"]) == ("active", None)

    response = await set_status(
        tenant, unique_id, {"status": "excluded", "reason": "  Staff account "}
    )
    assert response.status_code == 200, response.text
    changed = response.json()["data"]
    assert (changed["status"], changed["status_reason"]) == ("excluded", "Staff account")
    assert (await tenant.customer(unique_id))["status"] == "excluded"
    assert (await event_types(tenant))[-1] == "customer.status_changed"

    count = len(await event_types(tenant))
    again = await set_status(tenant, unique_id, {"status": "excluded", "reason": "Staff account"})
    assert again.status_code == 200
    assert len(await event_types(tenant)) == count  # nothing changed, nothing recorded

    back = await set_status(tenant, unique_id, {"status": "active"})
    assert (back.json()["data"]["status"], back.json()["data"]["status_reason"]) == ("active", None)


@pytest.mark.parametrize(
    ("status", "can_redeem"),
    [("active", True), ("inactive", True), ("excluded", False), ("excluded_by_customer", False)],
)
async def test_who_may_redeem(
    tenant: Tenant, unique_id: str, status: str, can_redeem: bool
) -> None:
    five = await create(tenant, FIVE_OFF)
    await funded(tenant, unique_id, 500)
    assert (await set_status(tenant, unique_id, {"status": status})).status_code == 200
    response = await redeem(tenant, unique_id, five["id"])
    if can_redeem:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "customer_excluded"
        assert response.json()["error"]["details"] == {"status": status}
    # Manual adjustments work whatever the status.
    assert (await tenant.adjust(unique_id, 10)).status_code == 201
    assert (await tenant.adjust(unique_id, -10)).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "banned"}, "status"),
        ({}, "status"),
        ({"status": "excluded", "reason": "x" * 501}, "reason"),
        ({"status": "excluded", "reason": "a\x07b"}, "reason"),
        ({"status": "excluded", "note": "x"}, "note"),
    ],
)
async def test_bad_status_changes_are_422(
    tenant: Tenant, unique_id: str, body: dict[str, Any], field: str
) -> None:
    await tenant.enrol(unique_id)
    response = await set_status(tenant, unique_id, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert (await tenant.customer(unique_id))["status"] == "active"


async def test_unknown_or_foreign_customer_is_404(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    for who in (other_tenant, tenant):
        customer_id = unique_id if who is other_tenant else f"nobody-{unique_id}"
        response = await set_status(who, customer_id, {"status": "excluded"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "customer_not_found"
    assert (await tenant.customer(unique_id))["status"] == "active"
