"""Bonifiq surface, from seed 003: POST /v1/pvt/Customer/{id}/points, HTTP Basic, envelope."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.support.tenant import Tenant

ENVELOPE_FIELDS = {
    "Result", "Code", "CodeName", "Severity", "HasWarning", "HasError", "ErrorMessage",
    "ErrorCode",
}  # fmt: skip


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def change(
    tenant: Tenant, customer: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await tenant.client.post(
        f"/v1/pvt/Customer/{customer}/points",
        json=body,
        headers=headers if headers is not None else basic(tenant.token, "x"),
    )


def add(points: int, key: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"Points": points, "OperationType": 0 if points > 0 else 1,
                            "Reason": "Purchase 123"}  # fmt: skip
    if key is not None:
        body["ChangeKey"] = key
    return {**body, **extra}


async def test_adding_and_removing_points(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com", first_name="Ada",
                       last_name="Lovelace")  # fmt: skip
    body = add(10, f"ADD-{unique_id}-10-123", CustomerReason="<b>Thanks</b> for your order")
    added = await change(tenant, unique_id, body)
    assert added.status_code == 200, added.text
    envelope = added.json()
    assert set(envelope) == ENVELOPE_FIELDS
    assert (envelope["Code"], envelope["CodeName"], envelope["Severity"]) == ("00", "Success", 0)
    assert (envelope["HasError"], envelope["HasWarning"], envelope["ErrorMessage"]) == (
        False,
        False,
        None,
    )
    result = envelope["Result"]
    assert (result["CustomerExists"], result["PointsBalance"], result["Name"]) == (
        True,
        10,
        "Ada Lovelace",
    )
    assert result["PointHistory"][0]["Amount"] == 10
    assert set(result) == {"CustomerExists", "InternalId", "PointsBalance", "PointsToExpire",
                           "CashbackBalance", "PointHistory", "Name"}  # fmt: skip
    # By email too; removing takes a negative number with OperationType 1.
    removed = await change(tenant, f"{unique_id}@example.com", add(-4, f"REM-{unique_id}"))
    assert removed.status_code == 200, removed.text
    assert removed.json()["Result"]["PointsBalance"] == 6
    log = (
        await tenant.get("/api/v1/public/customers/transactions", params={"customer_id": unique_id})
    ).json()["data"]
    # Reason is internal; CustomerReason is shown (tags stripped), else the default text.
    assert (log[1]["description"], log[1]["internal_note"]) == (
        "Thanks for your order",
        "Purchase 123",
    )
    assert log[0]["description"] == "Points adjustment"


async def test_a_used_change_key_is_an_error_and_changes_nothing(
    tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    key = f"ADD-{unique_id}"
    assert (await change(tenant, unique_id, add(10, key))).status_code == 200
    for body in (add(10, key), add(99, key)):
        again = await change(tenant, unique_id, body)
        assert again.status_code == 409, again.text
        assert (again.json()["Code"], again.json()["CodeName"]) == ("04", "ChangeKeyAlreadyUsed")
        assert (again.json()["HasError"], again.json()["Severity"]) == (True, 2)
    assert (await tenant.customer(unique_id))["points_balance"] == 10


async def test_failures_in_the_envelope(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    for body, name in (
        (add(10) | {"OperationType": 1}, "OperationType"),
        (add(-10) | {"OperationType": 0}, "OperationType"),
        ({"Points": 0, "OperationType": 0, "Reason": "x"}, "Points"),
        ({"Points": 5, "OperationType": 0}, "Reason"),
        (add(5, CustomerReason="x" * 256), "CustomerReason"),
        (add(5) | {"OperationType": 2}, "OperationType"),
    ):
        response = await change(tenant, unique_id, body)
        assert response.status_code == 400, (body, response.text)
        envelope = response.json()
        assert (envelope["Code"], envelope["CodeName"], envelope["HasError"]) == (
            "01",
            "InvalidRequest",
            True,
        )
        assert name in envelope["ErrorMessage"], envelope
    short = await change(tenant, unique_id, add(-1))
    assert short.status_code == 400
    assert (short.json()["Code"], short.json()["CodeName"]) == ("02", "InsufficientPoints")
    unknown = await change(tenant, "nobody-" + unique_id, add(5))
    assert unknown.status_code == 404
    assert unknown.json()["Result"] == {"CustomerExists": False}
    assert unknown.json()["CodeName"] == "CustomerNotFound"
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_basic_auth_with_the_key_as_user_or_password(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    as_password = await change(tenant, unique_id, add(1), basic("store", tenant.token))
    assert as_password.status_code == 200, as_password.text
    for headers in (
        {},
        {"Authorization": f"Bearer {tenant.token}"},
        basic("store", "lk_wrong"),
        {"Authorization": "Basic !!!"},
    ):
        response = await change(tenant, unique_id, add(1), headers)
        assert response.status_code == 401, headers
        assert (response.json()["CodeName"], response.json()["HasError"]) == (
            "Unauthorized",
            True,
        )
    foreign = await change(other_tenant, unique_id, add(1))  # another merchant's key
    assert foreign.status_code == 404
    assert (await tenant.customer(unique_id))["points_balance"] == 1
