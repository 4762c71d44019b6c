"""The scheduled jobs and the in-process scheduler of `loyalty serve`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from litestar import Litestar
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.db.tables import customer_rewards
from loyalty.jobs import JOBS, Scheduler, run_due_jobs, scheduler_enabled
from loyalty.scheduling import Job, JobContext
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


class MonotonicClock:
    """Monotonic seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording(name: str, every: timedelta | None, ran: list[str]) -> Job:
    async def run(context: JobContext) -> Mapping[str, float]:
        ran.append(name)
        return {"done": 1}

    return Job(name, every, run, summary=f"{name} {{done}}")


def bare_scheduler(
    jobs: list[Job], clock: MonotonicClock, interval_seconds: float = 60
) -> Scheduler:
    none = cast("Any", None)  # the recording jobs use no database or writer
    return Scheduler(none, Settings(), none, interval_seconds, jobs=jobs, clock=clock)


async def test_a_job_runs_only_once_its_every_has_passed() -> None:
    ran: list[str] = []
    clock = MonotonicClock()
    hourly = recording("hourly", timedelta(hours=1), ran)
    every_pass = recording("every_pass", None, ran)  # every interval_seconds (60 here)
    scheduler = bare_scheduler([hourly, every_pass], clock)

    first = await scheduler.run_due()  # nothing has run yet: everything is due
    assert ran == ["hourly", "every_pass"]
    assert first.ran() == ["hourly", "every_pass"]
    assert first.summaries() == ["hourly 1", "every_pass 1"]

    ran.clear()
    clock.now += 59  # neither due
    assert (await scheduler.run_due()).ran() == []
    clock.now += 1  # 60 s: the default every has passed, the hour has not
    await scheduler.run_due()
    assert ran == ["every_pass"]

    ran.clear()
    clock.now += 3600 - 60  # an hour after the first run: both due
    await scheduler.run_due()
    assert ran == ["hourly", "every_pass"]
    assert scheduler.runs == 4


async def test_a_failed_job_is_due_again_and_does_not_stop_the_others() -> None:
    ran: list[str] = []
    attempts: list[float] = []
    clock = MonotonicClock()

    async def flaky(context: JobContext) -> Mapping[str, float]:
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise RuntimeError("database away")
        return {}

    scheduler = bare_scheduler(
        [Job("flaky", timedelta(hours=1), flaky), recording("after", None, ran)], clock
    )
    first = await scheduler.run_due()
    assert list(first.failures) == ["flaky"]
    assert ran == ["after"]
    clock.now += 60
    second = await scheduler.run_due()  # retried on the next pass, not an hour later
    assert second.ran() == ["flaky", "after"]
    assert len(attempts) == 2


async def test_stop_ends_the_loop_even_when_a_job_turns_its_cancellation_into_an_error() -> None:
    # A driver's clean-up can fail while a cancelled query unwinds (SQLAlchemy's
    # reconnect raising MissingGreenlet): the job then raises another error in
    # place of the cancellation. That must stop the loop, not count as a failure
    # to retry on the next pass (a worker kept running its jobs after SIGTERM).
    started = asyncio.Event()
    ran: list[str] = []

    async def stubborn(context: JobContext) -> Mapping[str, float]:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("clean-up failed") from None
        return {}

    scheduler = bare_scheduler(
        [Job("stubborn", None, stubborn), recording("after", None, ran)],
        MonotonicClock(),
        interval_seconds=0.01,
    )
    task = scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(scheduler.stop(), 5)
    assert task.done()
    assert ran == []  # stopped mid-job: the jobs after it did not run either


async def test_stop_between_passes_ends_the_loop_at_once() -> None:
    ran: list[str] = []
    passed = asyncio.Event()
    scheduler = bare_scheduler([recording("every_pass", None, ran)], MonotonicClock(), 3600)
    scheduler.start(lambda run: passed.set())
    await asyncio.wait_for(passed.wait(), 5)
    await asyncio.wait_for(scheduler.stop(), 5)  # not after the hour's pause
    assert ran == ["every_pass"]


def test_every_domain_job_is_collected_once() -> None:
    names = [job.name for job in JOBS]
    assert names == [
        "points_maintenance",
        "rewards_expiry",
        "idempotency_purge",
        "events_purge",
        "imports_resume",
    ]


async def test_run_due_jobs_runs_every_job(settings: Settings, app: Litestar) -> None:
    run = await run_due_jobs(app.state.database, settings, app.state.ledger_writer)
    assert run.ran() == [job.name for job in JOBS]
    assert not run.failures
