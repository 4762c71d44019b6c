"""API keys: bearer auth, scopes, revocation, hashing, tenant isolation."""

from __future__ import annotations

import asyncio
import base64
import re

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth import repository as auth_repository
from loyalty.auth import service as auth_service
from loyalty.auth.scopes import ALL_SCOPES
from loyalty.auth.tokens import hash_token
from loyalty.db.tables import api_keys
from loyalty.db.types import utc_now
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"
TRANSACTIONS = "/api/v1/public/customers/transactions"


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert set(error) == {"code", "message", "details"}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic abc",
        "Bearer lk_nosuchkey_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "Bearer not-a-key",
        "Bearer " + "x" * 5000,
    ],
)
async def test_missing_or_invalid_key_is_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(CUSTOMERS, params={"customer_id": "1"}, headers=headers)
    assert_unauthorized(response)


async def test_right_prefix_wrong_secret_is_401(tenant: Tenant) -> None:
    forged = tenant.token[:-4] + ("AAAA" if not tenant.token.endswith("AAAA") else "BBBB")
    response = await tenant.client.get(
        CUSTOMERS, params={"customer_id": "1"}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert_unauthorized(response)


async def test_revocation_is_immediate(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    assert (await tenant.adjust(unique_id, 10)).status_code == 201

    async def revoke(connection: AsyncConnection) -> None:
        prefix = tenant.token.split("_")[1]
        await auth_service.revoke_key(connection, prefix)

    await tenant.database.transaction(revoke)
    response = await tenant.adjust(unique_id, 10)
    assert_unauthorized(response)
    # The refused request moved nothing.
    tenant.token = await tenant.new_key("all")
    assert (await tenant.customer(unique_id))["points_balance"] == 10


async def test_insufficient_scope_names_the_scope(tenant: Tenant, unique_id: str) -> None:
    await tenant.enrol(unique_id)
    read_only = await tenant.new_key("customers:read,transactions:read")
    response = await tenant.client.post(
        TRANSACTIONS,
        params={"customer_id": unique_id},
        json={"points": 5, "description": "x"},
        headers={"Authorization": f"Bearer {read_only}"},
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope"
    assert error["details"] == {"required_scope": "transactions:write"}
    assert "transactions:write" in error["message"]
    # The read scope works with the same key.
    response = await tenant.client.get(
        CUSTOMERS,
        params={"customer_id": unique_id},
        headers={"Authorization": f"Bearer {read_only}"},
    )
    assert response.status_code == 200
    assert (await tenant.customer(unique_id))["points_balance"] == 0


SOME_ID = "00000000-0000-7000-8000-000000000001"
SCOPED_ENDPOINTS = [
    ("POST", CUSTOMERS, "customers:write"),
    ("GET", CUSTOMERS, "customers:read"),
    ("PATCH", f"{CUSTOMERS}/status", "customers:write"),
    ("GET", f"{CUSTOMERS}/referral", "customers:read"),
    ("POST", TRANSACTIONS, "transactions:write"),
    ("GET", TRANSACTIONS, "transactions:read"),
    ("POST", "/api/v1/public/customers/transfers", "transactions:write"),
    ("GET", "/api/v1/public/customers/rewards/redeemable", "rewards:read"),
    ("POST", "/api/v1/rewards", "rewards:write"),
    ("GET", "/api/v1/rewards", "rewards:read"),
    ("GET", f"/api/v1/rewards/{SOME_ID}", "rewards:read"),
    ("PATCH", f"/api/v1/rewards/{SOME_ID}", "rewards:write"),
    ("DELETE", f"/api/v1/rewards/{SOME_ID}", "rewards:write"),
    ("POST", "/api/v1/public/customers/rewards/redeem", "rewards:write"),
    ("GET", f"/api/v1/public/customers/rewards/{SOME_ID}", "rewards:read"),
    ("PATCH", f"/api/v1/public/customers/rewards/{SOME_ID}", "rewards:write"),
    ("POST", f"/api/v1/public/customers/rewards/{SOME_ID}/use", "rewards:write"),
    ("POST", f"/api/v1/public/customers/rewards/{SOME_ID}/revert", "rewards:write"),
    ("GET", "/api/v1/settings/program", "settings:read"),
    ("PATCH", "/api/v1/settings/program", "settings:write"),
    ("POST", "/api/v1/settings/program/preview", "settings:read"),
    ("GET", "/api/v1/public/customers/pending", "transactions:read"),
    ("POST", "/api/v1/public/customers/pending/approve", "transactions:write"),
    ("POST", f"/api/v1/public/customers/pending/{SOME_ID}/cancel", "transactions:write"),
    ("GET", "/api/v1/tiers", "settings:read"),
    ("POST", "/api/v1/tiers", "settings:write"),
    ("GET", f"/api/v1/tiers/{SOME_ID}", "settings:read"),
    ("PATCH", f"/api/v1/tiers/{SOME_ID}", "settings:write"),
    ("GET", "/api/v1/earn-rules", "settings:read"),
    ("POST", "/api/v1/earn-rules", "settings:write"),
    ("GET", f"/api/v1/earn-rules/{SOME_ID}", "settings:read"),
    ("PATCH", f"/api/v1/earn-rules/{SOME_ID}", "settings:write"),
    ("POST", "/api/v1/public/orders", "orders:write"),
    ("POST", "/api/v1/public/customers/actions", "transactions:write"),
    ("POST", "/api/v1/public/orders/estimate", "rewards:read"),
    ("POST", f"/api/v1/public/orders/{SOME_ID}/refunds", "orders:write"),
    ("GET", "/api/v1/events", "webhooks:read"),
    ("POST", "/api/v1/webhooks", "webhooks:write"),
    ("GET", "/api/v1/webhooks", "webhooks:read"),
    ("GET", f"/api/v1/webhooks/{SOME_ID}", "webhooks:read"),
    ("PATCH", f"/api/v1/webhooks/{SOME_ID}", "webhooks:write"),
    ("DELETE", f"/api/v1/webhooks/{SOME_ID}", "webhooks:write"),
    ("POST", f"/api/v1/webhooks/{SOME_ID}/rotate-secret", "webhooks:write"),
    ("POST", f"/api/v1/webhooks/{SOME_ID}/test", "webhooks:write"),
    ("GET", f"/api/v1/webhooks/{SOME_ID}/deliveries", "webhooks:read"),
    ("POST", f"/api/v1/webhooks/{SOME_ID}/deliveries/{SOME_ID}/resend", "webhooks:write"),
    ("POST", f"/api/v1/webhooks/{SOME_ID}/recover", "webhooks:write"),
    ("GET", "/api/v1/customers", "customers:read"),
    ("DELETE", CUSTOMERS, "customers:write"),
    ("GET", f"{CUSTOMERS}/data", "customers:read"),
    ("POST", "/api/v1/imports", "customers:write"),
    ("GET", f"/api/v1/imports/{SOME_ID}", "customers:read"),
    ("GET", "/api/v1/exports/customers.csv", "customers:read"),
    ("GET", "/api/v1/exports/transactions.csv", "transactions:read"),
]


# The vendor surfaces take the key in their own style.
def _vendor_credentials(path: str, tenant: Tenant, token: str) -> dict[str, str]:
    if path.startswith("/api/v2/points"):
        return {"x-guid": str(tenant.merchant_id), "x-api-key": token}
    if path.startswith("/v1/pvt/"):
        return {"Authorization": "Basic " + base64.b64encode(f"{token}:x".encode()).decode()}
    return {"X-API-Key": token}


ADAPTER_ENDPOINTS = [
    ("POST", "/api/v2/points/adjust", "transactions:write"),
    ("POST", "/v1/pvt/Customer/{id}/points", "transactions:write"),
    ("POST", "/api/external/add-points", "transactions:write"),
    ("POST", "/api/external/remove-points", "transactions:write"),
    ("POST", "/api/external/redeem-points", "rewards:write"),
    ("GET", "/api/external/customer-loyalty", "customers:read"),
    ("GET", "/api/external/point-redeem-rules", "rewards:read"),
]


@pytest.mark.parametrize(("method", "path", "scope"), SCOPED_ENDPOINTS + ADAPTER_ENDPOINTS)
async def test_every_endpoint_enforces_its_scope(
    tenant: Tenant, method: str, path: str, scope: str
) -> None:
    every_other = ",".join(s for s in ALL_SCOPES if s != scope)
    token = await tenant.new_key(every_other)
    adapter = (method, path, scope) in ADAPTER_ENDPOINTS
    response = await tenant.client.request(
        method,
        path.replace("{id}", "1"),
        params={"customer_id": "1"},
        json={"customer_id": "1"} if method in ("POST", "PATCH") else None,
        headers=_vendor_credentials(path, tenant, token)
        if adapter
        else {"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 403
    if not adapter:
        assert response.json()["error"]["details"] == {"required_scope": scope}


def test_the_scope_list_above_covers_every_endpoint(app: Litestar) -> None:
    listed = {
        (method, re.sub(r"/[0-9a-f-]{36}", "/{id}", path), scope)
        for method, path, scope in SCOPED_ENDPOINTS + ADAPTER_ENDPOINTS
    }
    served = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            scope = handler.opt.get("scope")
            if scope is None:
                continue
            path = re.sub(r"\{[a-z_]+:str\}", "{id}", route.path_format.rstrip("/") or "/")
            path = re.sub(r"\{[a-z_]+\}", "{id}", path)
            for method in handler.http_methods:
                served.add((method, path, scope))
    assert served == listed


async def test_tokens_are_stored_only_as_hashes(tenant: Tenant) -> None:
    async with tenant.database.read() as connection:
        rows = (
            await connection.execute(
                select(api_keys).where(api_keys.c.merchant_id == tenant.merchant_id)
            )
        ).all()
    assert rows
    secret = tenant.token.rsplit("_", 1)[1]
    for row in rows:
        assert secret not in " ".join(str(value) for value in row)
        assert len(row.token_sha256) == 64


async def test_foreign_customer_is_404_never_403(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id, email=f"{unique_id}@example.com")
    assert (await tenant.adjust(unique_id, 50)).status_code == 201
    # The other merchant's key sees nothing and moves nothing.
    for response in (
        await other_tenant.get(CUSTOMERS, params={"customer_id": unique_id}),
        await other_tenant.get(CUSTOMERS, params={"customer_email": f"{unique_id}@example.com"}),
        await other_tenant.get(TRANSACTIONS, params={"customer_id": unique_id}),
        await other_tenant.get(
            "/api/v1/public/customers/rewards/redeemable", params={"customer_id": unique_id}
        ),
        await other_tenant.adjust(unique_id, -50),
        await other_tenant.adjust(unique_id, 50),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "customer_not_found"
    assert (await tenant.customer(unique_id))["points_balance"] == 50
    # Enrolling the same platform id under the other merchant is a different customer.
    theirs = await other_tenant.enrol(unique_id)
    assert theirs["points_balance"] == 0
    assert theirs["id"] != (await tenant.customer(unique_id))["id"]


async def test_revocation_reaches_the_key_cache_by_notify(tenant: Tenant, unique_id: str) -> None:
    """A revocation made by another process (here: a bare transaction that only
    updates the row and notifies) empties this process's cache when it commits."""
    database = tenant.database
    if database.is_sqlite:
        assert not database.key_cache.enabled  # no NOTIFY: every request is looked up
        return
    await tenant.enrol(unique_id)
    assert (await tenant.customer(unique_id))["points_balance"] == 0
    assert database.key_cache.get(hash_token(tenant.token)) is not None  # cached

    async def revoke_elsewhere(connection: AsyncConnection) -> None:
        key = (await auth_repository.find_by_id_or_prefix(connection, tenant.token[3:13]))[0]
        await auth_repository.mark_revoked(connection, key, utc_now())
        await auth_repository.announce_revocation(connection, key.prefix)

    await database.transaction(revoke_elsewhere)
    for _ in range(100):
        if database.key_cache.get(hash_token(tenant.token)) is None:
            break
        await asyncio.sleep(0.01)
    response = await tenant.get("/api/v1/public/customers", params={"customer_id": unique_id})
    assert_unauthorized(response)


async def test_key_cache_is_off_while_its_listener_is_down(tenant: Tenant, unique_id: str) -> None:
    database = tenant.database
    if database.is_sqlite:
        assert not database.key_cache.enabled
        return
    await tenant.enrol(unique_id)
    async with database.read() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        )
    for _ in range(100):
        if not database.key_cache.enabled:
            break
        await asyncio.sleep(0.01)
    assert not database.key_cache.enabled
    # Requests keep working, checked against the database...
    assert (await tenant.customer(unique_id))["customer_id"] == unique_id
    # ...and the listener comes back by itself.
    for _ in range(300):
        if database.key_cache.enabled:
            break
        await asyncio.sleep(0.01)
    assert database.key_cache.enabled
