"""The serving switches (LOYALTY_FAST_PATH, LOYALTY_GC_TUNING) and what GC tuning does."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from loyalty import gc_tuning
from loyalty.app import create_app
from loyalty.db.migrate import upgrade_to_head_async
from loyalty.settings import Settings


def test_switches_default_on_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOYALTY_FAST_PATH", raising=False)
    monkeypatch.delenv("LOYALTY_GC_TUNING", raising=False)
    settings = Settings.from_env()
    assert settings.fast_path is True
    assert settings.gc_tuning is True
    # Settings built in code (tests, embedding) leave the collector alone.
    assert Settings().gc_tuning is False


@pytest.mark.parametrize("name", ["LOYALTY_FAST_PATH", "LOYALTY_GC_TUNING"])
def test_switches_turn_off_and_refuse_other_values(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    field = name.removeprefix("LOYALTY_").lower()
    monkeypatch.setenv(name, " OFF ")
    assert getattr(Settings.from_env(), field) is False
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(ValueError, match=f"{name} must be on or off"):
        Settings.from_env()


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_the_started_heap_and_widens_the_young_generation() -> None:
    assert gc.get_freeze_count() == 0
    gc_tuning.tune_for_serving()
    assert gc.get_freeze_count() > 1000  # every module, class and function imported so far
    assert gc.get_threshold() == (
        gc_tuning.YOUNG_THRESHOLD,
        gc_tuning.MIDDLE_THRESHOLD,
        gc_tuning.OLD_THRESHOLD,
    )
    # Objects made afterwards are still collected when they form cycles.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


@pytest.mark.usefixtures("restored_collector")
async def test_the_app_tunes_the_collector_once_started(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loyalty.db'}"
    await upgrade_to_head_async(url)
    app = create_app(Settings(database_url=url, scheduler="off", gc_tuning=True))
    assert gc.get_freeze_count() == 0
    async with AsyncTestClient(app) as client:
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.usefixtures("restored_collector")
async def test_apps_built_in_code_leave_the_collector_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loyalty.db'}"
    await upgrade_to_head_async(url)
    thresholds = gc.get_threshold()
    async with AsyncTestClient(create_app(Settings(database_url=url, scheduler="off"))):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == thresholds
