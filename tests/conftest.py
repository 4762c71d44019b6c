"""Test fixtures: every database test runs on SQLite and on Postgres.

Postgres tests create their own database and drop it afterwards; if Postgres
is unreachable they fail (never skip). Tests isolate themselves by creating
their own merchant, so no truncation is needed between tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.app import create_app, start_services, stop_services
from loyalty.auth import service as auth_service
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.db.tables import events
from loyalty.db.types import set_clock_offset
from loyalty.jobs import JobsRun, run_due_jobs
from loyalty.merchants import service as merchants_service
from loyalty.settings import Settings

UNLIMITED = "1000000/minute"
POSTGRES_ADMIN_URL = os.environ.get(
    "LOYALTY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _postgres_admin(sql: str) -> None:
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"Postgres is required for the test suite and is unreachable at "
            f"{POSTGRES_ADMIN_URL}: {error}"
        )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_url_for(database_name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database_name}"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "loyalty.db"
        url = f"sqlite:///{path}"
        await upgrade_to_head_async(url)
        yield url
        return
    name = f"loyalty_test_{uuid.uuid4().hex[:12]}"
    await _postgres_admin(f'CREATE DATABASE "{name}"')
    url = postgres_url_for(name)
    try:
        await upgrade_to_head_async(url)
        yield url
    finally:
        await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Jobs run when a test runs them (tests/test_jobs.py tests the scheduler itself).
    # Limits are tested with keys of their own (tests/test_rate_limits.py).
    return Settings(
        database_url=database_url,
        database_pool_size=20,
        scheduler="off",
        rate_limit_default=UNLIMITED,
    )


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings, database: Database) -> AsyncIterator[Litestar]:
    application = create_app(settings, database)
    await start_services(application, settings, database)
    yield application
    await stop_services(application, dispose_database=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast("Any", app))
    async with httpx.AsyncClient(transport=transport, base_url="http://loyalty.test") as client:
        yield client


@dataclass
class Tenant:
    """A merchant with an all-scopes API key, and helpers to call the API as it."""

    merchant_id: uuid.UUID
    token: str
    client: httpx.AsyncClient
    database: Database

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.client.post(path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.client.get(path, headers=headers, **kwargs)

    async def enrol(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        response = await self.post(
            "/api/v1/public/customers", json={"customer_id": customer_id, **fields}
        )
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def adjust(
        self, customer_id: str, points: Any, description: str = "test", **extra: Any
    ) -> httpx.Response:
        return await self.post(
            "/api/v1/public/customers/transactions",
            params={"customer_id": customer_id},
            json={"points": points, "description": description, **extra},
        )

    async def customer(self, customer_id: str) -> dict[str, Any]:
        response = await self.get("/api/v1/public/customers", params={"customer_id": customer_id})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def new_key(self, scopes: str) -> str:
        return await create_key(self.database, self.merchant_id, scopes)


async def create_merchant(database: Database, name: str = "Test shop") -> uuid.UUID:
    async def work(connection: AsyncConnection) -> uuid.UUID:
        merchant = await merchants_service.create_merchant(connection, name)
        return merchant.id

    return await database.transaction(work)


async def create_key(database: Database, merchant_id: uuid.UUID, scopes: str = "all") -> str:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(connection, merchant_id=merchant_id, scopes=scopes)
        return key.token

    return await database.transaction(work)


@pytest.fixture
async def tenant(database: Database, client: httpx.AsyncClient) -> Tenant:
    merchant_id = await create_merchant(database)
    token = await create_key(database, merchant_id)
    return Tenant(merchant_id=merchant_id, token=token, client=client, database=database)


@pytest.fixture
async def other_tenant(database: Database, client: httpx.AsyncClient) -> Tenant:
    merchant_id = await create_merchant(database, "Other shop")
    token = await create_key(database, merchant_id)
    return Tenant(merchant_id=merchant_id, token=token, client=client, database=database)


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:16]


async def event_types(tenant: Tenant) -> list[str]:
    """The merchant's events, oldest first."""
    async with tenant.database.read() as connection:
        rows = await connection.execute(
            select(events.c.type)
            .where(events.c.merchant_id == tenant.merchant_id)
            .order_by(events.c.id)
        )
        return list(rows.scalars().all())


class Clock:
    """The application's clock, moved by tests of time-driven rules."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)
        set_clock_offset(self.offset)


@pytest.fixture
def clock() -> Iterator[Clock]:
    moved = Clock()
    try:
        yield moved
    finally:
        set_clock_offset(timedelta(0))


@pytest.fixture
def run_jobs(app: Litestar, settings: Settings) -> Callable[[], Awaitable[JobsRun]]:
    """Run every due job once, as `loyalty worker --once` does, with the app's writer."""

    async def run() -> JobsRun:
        return await run_due_jobs(app.state.database, settings, app.state.ledger_writer)

    return run
