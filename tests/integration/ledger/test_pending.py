"""Pending credits: holds, listing, approval, cancellation and release by the scheduler."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from loyalty.jobs import JobsRun
from tests.support.clock import Clock
from tests.support.tenant import Tenant, event_types

TRANSACTIONS = "/api/v1/public/customers/transactions"
PENDING = "/api/v1/public/customers/pending"
APPROVE = f"{PENDING}/approve"
SETTINGS = "/api/v1/settings/program"
PENDING_FIELDS = {
    "id", "customer_id", "points", "points_cancelled", "kind", "description", "internal_note",
    "visible_to_customer", "apply_to_lifetime", "expires_at", "status", "available_at",
    "transaction_id", "earn_rule_id", "released_at", "cancelled_at", "created_at",
}  # fmt: skip
RunJobs = Callable[[], Awaitable[JobsRun]]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def close_to(value: str | None, expected: datetime, seconds: float = 60) -> bool:
    return value is not None and abs((when(value) - expected).total_seconds()) < seconds


async def hold(
    tenant: Tenant, customer_id: str, points: float = 100, **extra: Any
) -> dict[str, Any]:
    if "available_at" not in extra:
        extra.setdefault("pending_days", 14)
    response = await tenant.adjust(customer_id, points, "Order 1001", **extra)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def approve(
    tenant: Tenant, customer_id: str, body: dict[str, Any] | None = None, **kwargs: Any
) -> httpx.Response:
    if body is None:
        return await tenant.post(APPROVE, params={"customer_id": customer_id}, **kwargs)
    return await tenant.post(APPROVE, params={"customer_id": customer_id}, json=body, **kwargs)


async def cancel(tenant: Tenant, pending_id: str, **kwargs: Any) -> httpx.Response:
    return await tenant.post(f"{PENDING}/{pending_id}/cancel", **kwargs)


async def listed(tenant: Tenant, customer_id: str, **params: Any) -> dict[str, Any]:
    response = await tenant.get(PENDING, params={"customer_id": customer_id, **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def ledger(tenant: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await tenant.get(TRANSACTIONS, params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


async def test_hold_counts_as_pending_only(tenant: Tenant, unique_id: str) -> None:
    enrolled = await tenant.enrol(unique_id)
    held = await hold(tenant, unique_id, 100, internal_note="staff")
    assert set(held) == PENDING_FIELDS | {"points_balance", "pending_points"}
    assert held["customer_id"] == enrolled["id"]
    assert (held["points"], held["status"], held["kind"]) == (100, "pending", "adjustment")
    assert (held["description"], held["internal_note"]) == ("Order 1001", "staff")
    assert (held["points_balance"], held["pending_points"]) == (0, 100)
    assert (held["transaction_id"], held["released_at"], held["cancelled_at"]) == (None,) * 3
    assert held["apply_to_lifetime"] is True
    created = when(held["created_at"])
    assert abs(when(held["available_at"]) - (created + timedelta(days=14))) < timedelta(seconds=5)

    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (0, 100)
    assert customer["lifetime_points"] == 0
    assert await ledger(tenant, unique_id) == []
    assert (await event_types(tenant))[-1] == "pending_points.created"
    assert "transaction.created" not in await event_types(tenant)

    # Pending points cannot be spent.
    assert (await tenant.adjust(unique_id, 30)).status_code == 201
    refused = await tenant.adjust(unique_id, -50)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "insufficient_points"
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (30, 100)


async def test_hold_until_a_moment(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    held = await hold(tenant, unique_id, 40, available_at=at.isoformat())
    assert when(held["available_at"]) == at
    assert (held["status"], held["pending_points"]) == ("pending", 40)


def _future(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


TEN_DAYS = _future(10)


@pytest.mark.parametrize(
    ("points", "extra", "field"),
    [
        pytest.param(100, {"pending_days": 5, "available_at": TEN_DAYS}, "available_at", id="both"),
        pytest.param(-100, {"pending_days": 5}, "pending_days", id="debit-days"),
        pytest.param(-100, {"available_at": _future(5)}, "available_at", id="debit-at"),
        pytest.param(100, {"available_at": _future(-1 / 24)}, "available_at", id="past"),
        pytest.param(100, {"pending_days": 0}, "pending_days", id="zero-days"),
        pytest.param(100, {"pending_days": 3651}, "pending_days", id="too-many-days"),
        pytest.param(100, {"available_at": _future(3652)}, "available_at", id="too-far"),
        pytest.param(100, {"available_at": TEN_DAYS, "expires_at": _future(9)}, "expires_at",
                     id="expires-before-release"),
        pytest.param(100, {"available_at": TEN_DAYS, "expires_at": TEN_DAYS}, "expires_at",
                     id="expires-at-release"),
        pytest.param(100, {"pending_days": 14, "expires_at": _future(5)}, "expires_at",
                     id="days-expires-before-release"),
    ],
)  # fmt: skip
async def test_bad_holds_are_422(
    tenant: Tenant, unique_id: str, points: int, extra: dict[str, Any], field: str
) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 500)).status_code == 201
    count = len(await event_types(tenant))
    response = await tenant.adjust(unique_id, points, **extra)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"][0]["field"] == field
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (500, 0)
    assert (await listed(tenant, unique_id))["data"] == []
    assert len(await event_types(tenant)) == count


async def test_list_filters_and_pages(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    first = await hold(tenant, unique_id, 10)
    second = await hold(tenant, unique_id, 20)
    third = await hold(tenant, unique_id, 30)
    assert (await cancel(tenant, first["id"])).status_code == 200
    assert (await approve(tenant, unique_id, {"pending_id": second["id"]})).status_code == 200

    page = await listed(tenant, unique_id)
    assert [p["id"] for p in page["data"]] == [third["id"], second["id"], first["id"]]
    assert page["next_cursor"] is None
    assert set(page["data"][0]) == PENDING_FIELDS
    assert [p["status"] for p in page["data"]] == ["pending", "released", "cancelled"]
    for status, wanted in (("pending", third), ("released", second), ("cancelled", first)):
        only = (await listed(tenant, unique_id, status=status))["data"]
        assert [p["id"] for p in only] == [wanted["id"]]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
        page = await listed(tenant, unique_id, **params)
        assert len(page["data"]) == 1
        seen.append(page["data"][0]["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [third["id"], second["id"], first["id"]]

    for limit in (0, 101):
        response = await tenant.get(PENDING, params={"customer_id": unique_id, "limit": limit})
        assert response.status_code == 422, response.text


async def test_approve_one(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    kept = await hold(tenant, unique_id, 70)
    chosen = await hold(tenant, unique_id, 100)

    response = await approve(tenant, unique_id, {"pending_id": chosen["id"]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["points_balance"], data["pending_points"]) == (100, 70)
    [released] = data["released"]
    assert (released["id"], released["status"], released["points"]) == (
        chosen["id"],
        "released",
        100,
    )
    assert released["transaction_id"] is not None
    assert released["released_at"] is not None

    [entry] = await ledger(tenant, unique_id)
    assert entry["transaction_id"] == released["transaction_id"]
    assert (entry["type"], entry["points"], entry["description"]) == ("credit", 100, "Order 1001")
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (100, 70)
    assert customer["lifetime_points"] == 100
    assert (await event_types(tenant))[-2:] == ["transaction.created", "pending_points.released"]

    again = await approve(tenant, unique_id, {"pending_id": chosen["id"]})
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "invalid_pending_state"
    assert error["details"] == {"status": "released", "action": "release"}
    remaining = (await listed(tenant, unique_id, status="pending"))["data"]
    assert [p["id"] for p in remaining] == [kept["id"]]


@pytest.mark.parametrize("body", [None, {}])
async def test_approve_all(tenant: Tenant, unique_id: str, body: dict[str, Any] | None) -> None:
    await tenant.enrol(unique_id)
    ids = {(await hold(tenant, unique_id, points))["id"] for points in (10, 20, 30)}
    response = await approve(tenant, unique_id, body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert {p["id"] for p in data["released"]} == ids
    assert {p["status"] for p in data["released"]} == {"released"}
    assert (data["points_balance"], data["pending_points"]) == (60, 0)
    entries = await ledger(tenant, unique_id)
    assert sorted(e["points"] for e in entries) == [10, 20, 30]
    assert {e["transaction_id"] for e in entries} == {p["transaction_id"] for p in data["released"]}

    # Nothing left: releasing all again releases nothing.
    empty = await approve(tenant, unique_id, body)
    assert empty.status_code == 200, empty.text
    assert empty.json()["data"]["released"] == []
    assert (await tenant.customer(unique_id))["points_balance"] == 60


async def test_release_keeps_the_holds_fields(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    expires = (datetime.now(UTC) + timedelta(days=100)).replace(microsecond=0)
    held = await hold(
        tenant,
        unique_id,
        50,
        internal_note="return window",
        visible_to_customer=False,
        apply_to_lifetime=False,
        expires_at=expires.isoformat(),
    )
    assert (held["visible_to_customer"], held["apply_to_lifetime"]) == (False, False)
    assert when(held["expires_at"]) == expires
    customer = await tenant.customer(unique_id)
    assert (customer["expiring_points"], customer["points_expire_at"]) == (0, None)

    response = await approve(tenant, unique_id, {"pending_id": held["id"]})
    assert response.status_code == 200, response.text
    [entry] = await ledger(tenant, unique_id)
    assert entry["transaction_id"] == response.json()["data"]["released"][0]["transaction_id"]
    assert (entry["internal_note"], entry["visible_to_customer"]) == ("return window", False)
    assert entry["apply_to_lifetime"] is False
    assert when(entry["expires_at"]) == expires
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["lifetime_points"]) == (50, 0)
    assert customer["expiring_points"] == 50
    assert when(customer["points_expire_at"]) == expires


async def test_approve_unknown_or_foreign_is_404(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    await hold(tenant, unique_id)
    neighbour = f"{unique_id}-2"
    await tenant.enrol(neighbour)
    theirs = await hold(tenant, neighbour)
    await other_tenant.enrol(unique_id)
    foreign = await hold(other_tenant, unique_id)

    for pending_id in (str(uuid.uuid4()), theirs["id"], foreign["id"]):
        response = await approve(tenant, unique_id, {"pending_id": pending_id})
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "pending_credit_not_found"
    for who, customer_id in ((tenant, unique_id), (tenant, neighbour), (other_tenant, unique_id)):
        still = (await listed(who, customer_id))["data"]
        assert [p["status"] for p in still] == ["pending"]
    assert (await tenant.customer(unique_id))["points_balance"] == 0


async def test_cancel(tenant: Tenant, other_tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 5)).status_code == 201
    doomed = await hold(tenant, unique_id, 100)
    kept = await hold(tenant, unique_id, 40)

    response = await cancel(tenant, doomed["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["id"], data["status"]) == (doomed["id"], "cancelled")
    assert data["cancelled_at"] is not None
    assert (data["transaction_id"], data["released_at"]) == (None, None)
    assert (data["points_balance"], data["pending_points"]) == (5, 40)
    assert (await event_types(tenant))[-1] == "pending_points.cancelled"
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (5, 40)
    assert customer["lifetime_points"] == 5

    again = await cancel(tenant, doomed["id"])
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "invalid_pending_state"
    assert again.json()["error"]["details"] == {"status": "cancelled", "action": "cancel"}
    refused = await approve(tenant, unique_id, {"pending_id": doomed["id"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"] == {"status": "cancelled", "action": "release"}

    assert (await approve(tenant, unique_id, {"pending_id": kept["id"]})).status_code == 200
    late = await cancel(tenant, kept["id"])
    assert late.status_code == 409, late.text
    assert late.json()["error"]["details"] == {"status": "released", "action": "cancel"}

    for who, pending_id in (
        (tenant, str(uuid.uuid4())),
        (tenant, "not-a-uuid"),
        (other_tenant, kept["id"]),
    ):
        missing = await cancel(who, pending_id)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "pending_credit_not_found"
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (45, 0)


async def test_other_merchant_cannot_cancel(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    held = await hold(tenant, unique_id)
    response = await cancel(other_tenant, held["id"])
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "pending_credit_not_found"
    assert (await tenant.customer(unique_id))["pending_points"] == 100


async def test_jobs_release_when_due(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    await tenant.enrol(unique_id)
    held = await hold(tenant, unique_id, 100, pending_days=14)

    clock.advance(days=13)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (0, 100)
    assert [p["status"] for p in (await listed(tenant, unique_id))["data"]] == ["pending"]

    clock.advance(days=2)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (100, 0)
    assert customer["lifetime_points"] == 100
    [released] = (await listed(tenant, unique_id))["data"]
    assert (released["id"], released["status"]) == (held["id"], "released")
    [entry] = await ledger(tenant, unique_id)
    assert entry["transaction_id"] == released["transaction_id"]
    assert (await event_types(tenant))[-2:] == ["transaction.created", "pending_points.released"]

    # Nothing is released twice.
    await run_jobs()
    assert len(await ledger(tenant, unique_id)) == 1
    assert (await tenant.customer(unique_id))["points_balance"] == 100


async def test_concurrent_job_runs_release_once(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    await tenant.enrol(unique_id)
    await hold(tenant, unique_id, 100, pending_days=14)
    await hold(tenant, unique_id, 25, pending_days=20)
    clock.advance(days=15)
    await asyncio.gather(run_jobs(), run_jobs())
    entries = await ledger(tenant, unique_id)
    assert [e["points"] for e in entries] == [100]
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (100, 25)
    assert (await event_types(tenant)).count("pending_points.released") == 1


async def test_concurrent_approve_and_cancel_one_wins(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    held = await hold(tenant, unique_id, 100)
    approved, cancelled = await asyncio.gather(
        approve(tenant, unique_id, {"pending_id": held["id"]}), cancel(tenant, held["id"])
    )
    assert sorted([approved.status_code, cancelled.status_code]) == [200, 409]
    [final] = (await listed(tenant, unique_id))["data"]
    customer = await tenant.customer(unique_id)
    assert customer["pending_points"] == 0
    if approved.status_code == 200:
        assert (final["status"], customer["points_balance"]) == ("released", 100)
        assert len(await ledger(tenant, unique_id)) == 1
    else:
        assert (final["status"], customer["points_balance"]) == ("cancelled", 0)
        assert await ledger(tenant, unique_id) == []


async def test_approve_and_cancel_are_idempotent(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    first = await hold(tenant, unique_id, 100)
    second = await hold(tenant, unique_id, 50)

    key = {"Idempotency-Key": f"approve-{unique_id}"}
    body = {"pending_id": first["id"]}
    original = await approve(tenant, unique_id, body, headers=key)
    assert original.status_code == 200, original.text
    replay = await approve(tenant, unique_id, body, headers=key)
    assert replay.status_code == 200, replay.text
    assert replay.json() == original.json()
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert len(await ledger(tenant, unique_id)) == 1

    key = {"Idempotency-Key": f"cancel-{unique_id}"}
    cancelled = await cancel(tenant, second["id"], headers=key)
    assert cancelled.status_code == 200, cancelled.text
    again = await cancel(tenant, second["id"], headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == cancelled.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (await event_types(tenant)).count("pending_points.cancelled") == 1
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (100, 0)


async def test_pending_never_expires(
    tenant: Tenant, unique_id: str, clock: Clock, run_jobs: RunJobs
) -> None:
    response = await tenant.client.patch(
        SETTINGS, json={"expiry_policy": "fixed", "expiry_days": 30}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    await tenant.enrol(unique_id)
    await hold(tenant, unique_id, 100, pending_days=60)

    clock.advance(days=45)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (0, 100)
    assert (customer["points_expired"], customer["expiring_points"]) == (0, 0)
    assert [p["status"] for p in (await listed(tenant, unique_id))["data"]] == ["pending"]

    clock.advance(days=16)
    await run_jobs()
    customer = await tenant.customer(unique_id)
    assert (customer["points_balance"], customer["pending_points"]) == (100, 0)
    assert customer["points_expired"] == 0
    [released] = (await listed(tenant, unique_id))["data"]
    assert released["status"] == "released"
    # The released credit follows the programme's expiry from its release.
    assert customer["expiring_points"] == 100
    assert close_to(
        customer["points_expire_at"], when(released["released_at"]) + timedelta(days=30)
    )
