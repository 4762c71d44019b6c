"""Test fixtures: every database test runs on SQLite and on Postgres.

Postgres tests create their own database and drop it afterwards; if Postgres
is unreachable they fail (never skip). Tests isolate themselves by creating
their own merchant, so no truncation is needed between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar

from loyalty.app import create_app, start_services, stop_services
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.db.types import set_clock_offset
from loyalty.jobs import JobsRun, run_due_jobs
from loyalty.settings import Settings
from loyalty.webhooks.urls import parse_allowed_networks
from tests.support.clock import Clock
from tests.support.postgres import postgres_admin, postgres_url_for
from tests.support.tenant import Tenant, create_key, create_merchant

UNLIMITED = "1000000/minute"


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
    await postgres_admin(f'CREATE DATABASE "{name}"')
    url = postgres_url_for(name)
    try:
        await upgrade_to_head_async(url)
        yield url
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database that does not exist yet (SQLite) or is empty (Postgres)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"loyalty_e2e_{uuid.uuid4().hex[:12]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url_for(name)
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # Jobs run when a test runs them (tests/integration/jobs/test_jobs.py tests the
    # scheduler itself). Limits are tested with keys of their own
    # (tests/integration/http/test_rate_limits.py and
    # tests/system/test_rate_limits_across_processes.py).
    return Settings(
        database_url=database_url,
        database_pool_size=20,
        scheduler="off",
        rate_limit_default=UNLIMITED,
        # Webhook receivers of the tests listen on 127.0.0.1.
        webhook_allowed_networks=parse_allowed_networks("127.0.0.0/8"),
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
