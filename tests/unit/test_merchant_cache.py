"""MerchantCache: the per-process cache of merchant-wide values (no database)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from loyalty.db import merchant_cache
from loyalty.db.merchant_cache import MerchantCache, evict_in_process


def enabled_cache(*, ttl_seconds: float = 60.0, size_max: int = 10_000) -> MerchantCache[str]:
    cache: MerchantCache[str] = MerchantCache(
        f"test_{uuid.uuid4().hex}", ttl_seconds=ttl_seconds, size_max=size_max
    )
    cache.enable()
    return cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The module's clock, moved by hand (only merchant_cache sees it)."""
    fake = FakeClock()
    monkeypatch.setattr(merchant_cache, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_a_new_cache_is_disabled_stores_nothing_and_returns_none() -> None:
    cache: MerchantCache[str] = MerchantCache("test_disabled")
    merchant = uuid.uuid4()
    assert cache.enabled is False
    cache.put(merchant, "catalogue", cache.generation)
    assert cache.get(merchant) is None
    # Nothing was kept behind the switch either: enabling shows nothing.
    cache.enable()
    assert cache.get(merchant) is None


def test_enabled_cache_keeps_a_value_per_merchant() -> None:
    cache = enabled_cache()
    merchant, other = uuid.uuid4(), uuid.uuid4()
    assert cache.get(merchant) is None
    cache.put(merchant, "mine", cache.generation)
    cache.put(other, "theirs", cache.generation)
    assert cache.get(merchant) == "mine"
    assert cache.get(other) == "theirs"


def test_a_fill_that_an_eviction_overtook_is_dropped() -> None:
    cache = enabled_cache()
    merchant = uuid.uuid4()
    generation = cache.generation  # the fill starts, reads the database...
    cache.evict(merchant)  # ...a change commits meanwhile...
    cache.put(merchant, "stale", generation)  # ...and the value read before it comes back
    assert cache.get(merchant) is None
    # A fill begun after the eviction is kept.
    cache.put(merchant, "fresh", cache.generation)
    assert cache.get(merchant) == "fresh"


def test_an_eviction_of_another_merchant_also_drops_a_fill_in_flight() -> None:
    """One generation for the whole cache: conservative, never stale."""
    cache = enabled_cache()
    merchant = uuid.uuid4()
    generation = cache.generation
    cache.evict(uuid.uuid4())
    cache.put(merchant, "maybe stale", generation)
    assert cache.get(merchant) is None


def test_evict_drops_only_that_merchant() -> None:
    cache = enabled_cache()
    merchant, other = uuid.uuid4(), uuid.uuid4()
    cache.put(merchant, "mine", cache.generation)
    cache.put(other, "theirs", cache.generation)
    before = cache.generation
    cache.evict(merchant)
    assert cache.generation > before
    assert cache.get(merchant) is None
    assert cache.get(other) == "theirs"
    cache.evict(uuid.uuid4())  # an unknown merchant: nothing to drop, no error
    assert cache.get(other) == "theirs"


def test_entries_expire_after_ttl(clock: FakeClock) -> None:
    cache = enabled_cache(ttl_seconds=10)
    merchant = uuid.uuid4()
    cache.put(merchant, "catalogue", cache.generation)
    clock.now += 10
    assert cache.get(merchant) == "catalogue"  # expires after, not at, the deadline
    clock.now += 0.001
    assert cache.get(merchant) is None
    # The expired entry is gone for good, even if the clock went back.
    clock.now -= 5
    assert cache.get(merchant) is None


def test_zero_ttl_expires_at_the_next_tick(clock: FakeClock) -> None:
    cache = enabled_cache(ttl_seconds=0)
    merchant = uuid.uuid4()
    cache.put(merchant, "catalogue", cache.generation)
    clock.now += 0.001
    assert cache.get(merchant) is None


def test_a_full_cache_is_cleared_before_a_new_entry() -> None:
    cache = enabled_cache(size_max=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(first, "1", cache.generation)
    cache.put(second, "2", cache.generation)
    assert (cache.get(first), cache.get(second)) == ("1", "2")
    cache.put(third, "3", cache.generation)
    assert cache.get(first) is None
    assert cache.get(second) is None
    assert cache.get(third) == "3"


def test_disable_clears_and_moves_the_generation() -> None:
    cache = enabled_cache()
    merchant = uuid.uuid4()
    cache.put(merchant, "catalogue", cache.generation)
    generation = cache.generation
    cache.disable()
    assert cache.enabled is False
    assert cache.generation > generation
    assert cache.get(merchant) is None
    # Nothing survived behind the switch.
    cache.enable()
    assert cache.get(merchant) is None
    # A fill begun before the listener was lost is dropped after it comes back.
    cache.put(merchant, "read before the loss", generation)
    assert cache.get(merchant) is None


def test_enable_drops_a_fill_begun_while_disabled() -> None:
    """While disabled, notifications may have been missed: a value read then
    may be older than a change nobody told this process about."""
    cache: MerchantCache[str] = MerchantCache("test_enable")
    merchant = uuid.uuid4()
    generation = cache.generation  # a read starts while the listener is down
    cache.enable()  # the listener connects
    cache.put(merchant, "maybe stale", generation)
    assert cache.get(merchant) is None
    cache.put(merchant, "fresh", cache.generation)
    assert cache.get(merchant) == "fresh"


def test_a_notification_naming_a_merchant_evicts_it() -> None:
    cache = enabled_cache()
    merchant, other = uuid.uuid4(), uuid.uuid4()
    cache.put(merchant, "mine", cache.generation)
    cache.put(other, "theirs", cache.generation)
    generation = cache.generation
    cache.on_notification(str(merchant))
    assert cache.generation > generation
    assert cache.get(merchant) is None
    assert cache.get(other) == "theirs"
    # A fill in flight when the notification arrived is dropped.
    cache.put(merchant, "stale", generation)
    assert cache.get(merchant) is None


@pytest.mark.parametrize("payload", ["", "not a uuid", "1234"])
def test_a_notification_naming_no_merchant_clears_everything(payload: str) -> None:
    cache = enabled_cache()
    merchant, other = uuid.uuid4(), uuid.uuid4()
    cache.put(merchant, "mine", cache.generation)
    cache.put(other, "theirs", cache.generation)
    generation = cache.generation
    cache.on_notification(payload)
    assert cache.get(merchant) is None
    assert cache.get(other) is None
    assert cache.generation > generation
    cache.put(merchant, "stale", generation)
    assert cache.get(merchant) is None


def test_evict_in_process_reaches_every_cache_of_the_channel_and_no_other() -> None:
    channel = f"test_{uuid.uuid4().hex}"
    first: MerchantCache[str] = MerchantCache(channel)
    second: MerchantCache[str] = MerchantCache(channel)
    elsewhere: MerchantCache[str] = MerchantCache(f"test_{uuid.uuid4().hex}")
    merchant, other = uuid.uuid4(), uuid.uuid4()
    for cache in (first, second, elsewhere):
        cache.enable()
        cache.put(merchant, "mine", cache.generation)
        cache.put(other, "theirs", cache.generation)
    generations = [cache.generation for cache in (first, second, elsewhere)]
    evict_in_process(channel, merchant)
    for cache in (first, second):
        assert cache.get(merchant) is None
        assert cache.get(other) == "theirs"
    assert [first.generation > generations[0], second.generation > generations[1]] == [True, True]
    assert elsewhere.get(merchant) == "mine"
    assert elsewhere.generation == generations[2]
