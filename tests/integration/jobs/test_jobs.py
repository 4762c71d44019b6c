"""The scheduled jobs and the in-process scheduler of `loyalty serve`."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.db.tables import customer_rewards
from loyalty.jobs import Scheduler, scheduler_enabled
from loyalty.settings import Settings
from tests.support.rewards import CUSTOMER_REWARDS, FIVE_OFF, create, funded, redeem
from tests.support.tenant import Tenant


async def test_the_scheduler_expires_codes_while_the_api_runs(
    tenant: Tenant, settings: Settings, app: Litestar, unique_id: str
) -> None:
    weekly = await create(tenant, {**FIVE_OFF, "code_validity_days": 7})
    await funded(tenant, unique_id, 500)
    reward = (await redeem(tenant, unique_id, weekly["id"])).json()["data"]

    async def backdate(connection: AsyncConnection) -> None:
        await connection.execute(
            update(customer_rewards)
            .where(customer_rewards.c.merchant_id == tenant.merchant_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    await tenant.database.transaction(backdate)
    scheduler = Scheduler(tenant.database, settings, app.state.ledger_writer, interval_seconds=0.05)
    scheduler.start()
    try:
        for _ in range(100):
            if scheduler.runs >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert scheduler.runs >= 2
    fetched = await tenant.get(f"{CUSTOMER_REWARDS}/{reward['id']}")
    assert fetched.json()["data"]["status"] == "expired"


@pytest.mark.parametrize(
    ("mode", "sqlite", "enabled"),
    [("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False)],
)
def test_where_the_scheduler_runs(mode: str, sqlite: bool, enabled: bool) -> None:
    url = "sqlite:///x.db" if sqlite else "postgresql://postgres@127.0.0.1/x"
    settings = dataclasses.replace(Settings(database_url=url), scheduler=mode)
    assert scheduler_enabled(settings, Database(settings)) is enabled


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOYALTY_SCHEDULER", "sometimes"), ("LOYALTY_SCHEDULER_INTERVAL_SECONDS", "0")],
)
def test_bad_scheduler_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Settings.from_env()
