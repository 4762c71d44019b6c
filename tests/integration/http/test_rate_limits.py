"""Rate limits per API key: headers on every response, 429 past the budget, Redis shared."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.app import create_app, start_services, stop_services
from loyalty.auth import service as auth_service
from loyalty.db.engine import Database
from loyalty.http.ratelimit import ProcessMemoryStorage
from loyalty.settings import Settings
from tests.support.tenant import Tenant

CUSTOMERS = "/api/v1/public/customers"


async def limited_key(tenant: Tenant, rate_limit: str | None) -> dict[str, str]:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(
            connection, merchant_id=tenant.merchant_id, scopes="all", rate_limit=rate_limit
        )
        return key.token

    token = await tenant.database.transaction(work)
    return {"Authorization": f"Bearer {token}"}


async def test_a_key_gets_its_budget_and_headers(tenant: Tenant) -> None:
    headers = await limited_key(tenant, "3/minute")
    seen = []
    for _ in range(3):
        response = await tenant.client.get(CUSTOMERS, params={"customer_id": "x"}, headers=headers)
        assert response.status_code == 404  # errors count and carry the headers too
        seen.append((response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]))
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    refused = await tenant.client.get(CUSTOMERS, params={"customer_id": "x"}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"]["limit"] == 3
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    # Another key of the same merchant has its own budget; public routes have none.
    other = await tenant.client.get(CUSTOMERS, params={"customer_id": "x"}, headers=tenant.headers)
    assert other.status_code == 404
    health = await tenant.client.get("/healthz")
    assert "RateLimit-Limit" not in health.headers


async def test_a_refused_request_changes_nothing(tenant: Tenant, unique_id: str) -> None:
    headers = await limited_key(tenant, "2/minute")
    await tenant.enrol(unique_id)
    body = {"points": 10, "description": "x"}
    params = {"customer_id": unique_id}
    statuses = [
        (
            await tenant.client.post(
                "/api/v1/public/customers/transactions", params=params, json=body, headers=headers
            )
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 429, 429]
    assert (await tenant.customer(unique_id))["points_balance"] == 20


@pytest.fixture
async def default_limited(
    settings: Settings, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose keys without a limit of their own get 5/minute."""
    limited = dataclasses.replace(settings, rate_limit_default="5/minute")
    app = create_app(limited, database)
    await start_services(app, limited, database)
    transport = httpx.ASGITransport(app=cast("Any", app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty.test") as c:
            yield c
    finally:
        await stop_services(app, dispose_database=False)


async def test_keys_without_a_limit_get_the_default(
    tenant: Tenant, default_limited: httpx.AsyncClient
) -> None:
    statuses = [
        (await default_limited.get("/api/v1/rewards", headers=tenant.headers)).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]


async def test_an_unreachable_redis_lets_requests_through(
    tenant: Tenant, settings: Settings, database: Database
) -> None:
    broken = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    app = create_app(broken, database)
    await start_services(app, broken, database)
    transport = httpx.ASGITransport(app=cast("Any", app))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loyalty.test") as c:
            response = await c.get("/api/v1/rewards", headers=tenant.headers)
    finally:
        await stop_services(app, dispose_database=False)
    assert response.status_code == 200
    assert "RateLimit-Limit" not in response.headers


@pytest.mark.parametrize("value", ["100", "0/minute", "5/day", "2000000/hour"])
def test_a_bad_default_limit_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LOYALTY_RATE_LIMIT_DEFAULT", value)
    with pytest.raises(ValueError, match="LOYALTY_RATE_LIMIT_DEFAULT"):
        Settings.from_env()


async def test_the_window_slides() -> None:
    """At most N in any window: a slot frees when the oldest request leaves it."""
    limiter = MovingWindowRateLimiter(ProcessMemoryStorage())
    item = parse("2/second")
    assert [await limiter.hit(item, "k") for _ in range(3)] == [True, True, False]
    stats = await limiter.get_window_stats(item, "k")
    assert stats.remaining == 0
    await asyncio.sleep(1.05)
    assert [await limiter.hit(item, "k") for _ in range(3)] == [True, True, False]
    assert await limiter.hit(item, "other")  # keys are counted apart
