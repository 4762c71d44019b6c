"""The admin's signing key: LOYALTY_SECRET_KEY, else generated once per instance."""

from __future__ import annotations

import asyncio

import pytest
from litestar import Litestar
from sqlalchemy import select

from loyalty.admin.security import SECRET_NAME, SecretKeyError, load_secret_key
from loyalty.app import create_app, start_services, stop_services
from loyalty.db.engine import Database
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.db.tables import instance_secrets
from loyalty.settings import Settings


async def test_the_key_is_generated_once_and_every_start_reads_it(
    fresh_database_url: str,
) -> None:
    await upgrade_to_head_async(fresh_database_url)
    settings = Settings(database_url=fresh_database_url, scheduler="off")
    databases = [Database(settings) for _ in range(3)]
    try:
        # Processes starting together agree on one key.
        keys = await asyncio.gather(*(load_secret_key(db, settings) for db in databases[:2]))
        again = await load_secret_key(databases[2], settings)
        assert keys[0] == keys[1] == again
        assert len(again) >= 32
        async with databases[0].read() as connection:
            stored = (await connection.execute(select(instance_secrets))).all()
        assert [(row.name, row.value.encode()) for row in stored] == [(SECRET_NAME, again)]
    finally:
        for database in databases:
            await database.dispose()


async def test_two_app_starts_agree(fresh_database_url: str) -> None:
    await upgrade_to_head_async(fresh_database_url)
    settings = Settings(database_url=fresh_database_url, scheduler="off")
    keys = []
    for _ in range(2):
        application = create_app(settings)
        database = Database(settings)
        await start_services(application, settings, database)
        keys.append(application.state.admin_secret_key)
        await stop_services(application, dispose_database=False)
        await database.dispose()
    assert keys[0] == keys[1]


async def test_the_running_app_uses_the_stored_key(
    app: Litestar, database: Database, settings: Settings
) -> None:
    assert app.state.admin_secret_key == await load_secret_key(database, settings)


async def test_a_configured_key_is_used_and_nothing_is_stored_for_it(
    database: Database, settings: Settings
) -> None:
    configured = Settings(database_url=settings.database_url, secret_key="k" * 40)
    assert await load_secret_key(database, configured) == b"k" * 40


async def test_a_short_key_is_refused(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SecretKeyError, match="at least 32"):
        await load_secret_key(
            database, Settings(database_url=settings.database_url, secret_key="short")
        )
    monkeypatch.setenv("LOYALTY_SECRET_KEY", "too short")
    with pytest.raises(ValueError, match="LOYALTY_SECRET_KEY must be at least 32"):
        Settings.from_env()
    monkeypatch.setenv("LOYALTY_SECRET_KEY", "s" * 32)
    assert Settings.from_env().secret_key == "s" * 32
    monkeypatch.delenv("LOYALTY_SECRET_KEY")
    assert Settings.from_env().secret_key is None
