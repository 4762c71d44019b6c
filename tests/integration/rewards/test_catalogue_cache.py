"""The redeemable endpoint's catalogue cache (``Database.catalogue_cache``).

On Postgres each process keeps every merchant's active catalogue; a reward
change evicts it in the changing process at once and after the commit, and in
every other process by NOTIFY. On SQLite the cache stays off. Whatever the
database, a change shows in the next redeemable read, and the customer's
balance is never cached.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.customers.refs import CustomerRef
from loyalty.db import merchant_cache
from loyalty.db.engine import Database
from loyalty.db.merchant_cache import AFTER_COMMIT, CATALOGUE_CHANNEL, MerchantCache
from loyalty.rewards import repository, service
from loyalty.rewards.schemas import UpdateReward
from loyalty.settings import Settings
from tests.support.rewards import FIVE_OFF, REDEEMABLE, REWARDS, TEN_PERCENT, create, funded
from tests.support.tenant import Tenant

NO_NOTIFY = "SQLite has no NOTIFY: the catalogue cache stays off there"
WAIT_SECONDS = 5.0

# What a test compares of a catalogue entry: id, name, cost, can_redeem, points_needed.
Offer = tuple[str, str, float, bool, float]
FIVE_NAME = str(FIVE_OFF["name"])
TEN_NAME = str(TEN_PERCENT["name"])
SIX_NAME = "$6 off"
SIX_OFF = {**FIVE_OFF, "name": SIX_NAME, "points_cost": 600, "reward_rule": {"discount_value": 6}}


async def redeemable(tenant: Tenant, customer_id: str) -> dict[str, Any]:
    response = await tenant.get(REDEEMABLE, params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def offers(data: dict[str, Any]) -> list[Offer]:
    return [
        (r["id"], r["name"], r["points_cost"], r["can_redeem"], r["points_needed"])
        for r in data["rewards"]
    ]


async def patch_reward(tenant: Tenant, reward_id: str, body: dict[str, Any]) -> None:
    response = await tenant.client.patch(
        f"{REWARDS}/{reward_id}", json=body, headers=tenant.headers
    )
    assert response.status_code == 200, response.text


async def delete_reward(tenant: Tenant, reward_id: str) -> None:
    response = await tenant.client.delete(f"{REWARDS}/{reward_id}", headers=tenant.headers)
    assert response.status_code == 204, response.text


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` for up to WAIT_SECONDS."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"still not {what} after {WAIT_SECONDS} s")
        await asyncio.sleep(0.01)


async def settle(database: Database, *caches: MerchantCache[Any]) -> None:
    """Wait until the listeners feeding ``caches`` have handled every catalogue
    notification committed so far. Postgres delivers notifications in commit
    order: once a sentinel sent now has evicted its (made-up) merchant from a
    cache, everything committed before has reached that cache too."""
    sentinel = uuid.uuid4()
    for cache in caches:
        assert cache.enabled
        cache.put(sentinel, [], cache.generation)
        assert cache.get(sentinel) is not None
    async with database.raw_connection() as connection:
        await connection.execute("SELECT pg_notify($1, $2)", CATALOGUE_CHANNEL, str(sentinel))

    async def arrived() -> bool:
        return all(cache.get(sentinel) is None for cache in caches)

    await until(arrived, "the sentinel notification handled")


async def warm(tenant: Tenant, customer_id: str) -> dict[str, Any]:
    """Read the redeemable rewards; on Postgres, make sure the catalogue is cached
    afterwards (no notification of an earlier change still on its way)."""
    database = tenant.database
    if database.is_sqlite:
        data = await redeemable(tenant, customer_id)
        assert database.catalogue_cache.get(tenant.merchant_id) is None
        return data
    await settle(database, database.catalogue_cache)
    data = await redeemable(tenant, customer_id)
    assert database.catalogue_cache.get(tenant.merchant_id) is not None, "not cached"
    return data


@asynccontextmanager
async def deaf_to_catalogue_changes(database: Database) -> AsyncIterator[None]:
    """This process's listener stops hearing catalogue notifications (as if they
    came late), the cache staying on."""
    listener = database._revocation_listener
    assert listener is not None
    connection = listener._connection
    assert connection is not None
    await connection.execute(f'UNLISTEN "{CATALOGUE_CHANNEL}"')
    try:
        yield
    finally:
        await connection.execute(f'LISTEN "{CATALOGUE_CHANNEL}"')
    await settle(database, database.catalogue_cache)  # hearing again


def assert_evicted(tenant: Tenant) -> None:
    """Right after a change returns, this process holds no catalogue of the merchant."""
    assert tenant.database.catalogue_cache.get(tenant.merchant_id) is None


async def test_the_cache_is_on_only_where_notify_is(tenant: Tenant, unique_id: str) -> None:
    database = tenant.database
    assert database.catalogue_cache.enabled is (not database.is_sqlite)
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    data = await redeemable(tenant, unique_id)
    assert offers(data) == [(five["id"], FIVE_NAME, 500, True, 0)]
    if database.is_sqlite:
        assert database.catalogue_cache.get(tenant.merchant_id) is None  # never stored
    else:
        await warm(tenant, unique_id)
        cached = database.catalogue_cache.get(tenant.merchant_id)
        assert cached is not None
        assert [str(row.id) for row in cached] == [five["id"]]


async def test_every_catalogue_change_shows_in_the_next_read(
    tenant: Tenant, unique_id: str
) -> None:
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    name = FIVE_NAME
    assert offers(await warm(tenant, unique_id)) == [(five["id"], name, 500, True, 0)]

    await patch_reward(tenant, five["id"], {"points_cost": 700})
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == [(five["id"], name, 700, False, 100)]

    await warm(tenant, unique_id)
    await patch_reward(tenant, five["id"], {"name": "$5 off, renamed"})
    assert_evicted(tenant)
    renamed = [(five["id"], "$5 off, renamed", 700, False, 100)]
    assert offers(await redeemable(tenant, unique_id)) == renamed

    await warm(tenant, unique_id)
    await patch_reward(tenant, five["id"], {"active": False})
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == []

    await warm(tenant, unique_id)  # an empty catalogue is cached too
    await patch_reward(tenant, five["id"], {"active": True})
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == renamed

    await warm(tenant, unique_id)
    ten = await create(tenant, TEN_PERCENT)
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == [
        *renamed,
        (ten["id"], TEN_NAME, 1000, False, 400),
    ]

    await warm(tenant, unique_id)
    await delete_reward(tenant, five["id"])
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == [(ten["id"], TEN_NAME, 1000, False, 400)]


async def test_a_change_does_not_reach_another_merchants_catalogue(
    tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    await funded(tenant, unique_id, 600)
    await funded(other_tenant, unique_id, 600)
    mine = await create(tenant, FIVE_OFF)
    theirs = await create(other_tenant, FIVE_OFF)
    await warm(tenant, unique_id)
    await warm(other_tenant, unique_id)
    await patch_reward(tenant, mine["id"], {"points_cost": 550})
    assert offers(await redeemable(tenant, unique_id)) == [(mine["id"], FIVE_NAME, 550, True, 0)]
    assert offers(await redeemable(other_tenant, unique_id)) == [
        (theirs["id"], FIVE_NAME, 500, True, 0)
    ]
    if not tenant.database.is_sqlite:
        # The other merchant's catalogue stayed cached through the change.
        assert tenant.database.catalogue_cache.get(other_tenant.merchant_id) is not None


async def test_the_balance_is_never_cached(tenant: Tenant, unique_id: str) -> None:
    poorer = f"{unique_id}-2"
    await funded(tenant, unique_id, 400)
    await funded(tenant, poorer, 100)
    five = await create(tenant, FIVE_OFF)
    data = await warm(tenant, unique_id)
    assert data["points_balance"] == 400
    assert offers(data) == [(five["id"], FIVE_NAME, 500, False, 100)]
    cached = tenant.database.catalogue_cache.get(tenant.merchant_id)

    response = await tenant.adjust(unique_id, 100)
    assert response.status_code == 201, response.text
    data = await redeemable(tenant, unique_id)
    assert data["points_balance"] == 500
    assert offers(data) == [(five["id"], FIVE_NAME, 500, True, 0)]
    # Another customer of the shop is served the same catalogue with their own balance.
    data = await redeemable(tenant, poorer)
    assert data["points_balance"] == 100
    assert offers(data) == [(five["id"], FIVE_NAME, 500, False, 400)]

    response = await tenant.adjust(unique_id, -1)
    assert response.status_code == 201, response.text
    data = await redeemable(tenant, unique_id)
    assert data["points_balance"] == 499
    assert offers(data) == [(five["id"], FIVE_NAME, 500, False, 1)]
    if not tenant.database.is_sqlite:
        # All of that was served from the catalogue cached first: a points
        # movement does not touch it.
        assert cached is not None
        assert tenant.database.catalogue_cache.get(tenant.merchant_id) is cached


async def test_a_rolled_back_change_leaves_the_catalogue_as_it_was(
    tenant: Tenant, unique_id: str
) -> None:
    database = tenant.database
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    before = offers(await warm(tenant, unique_id))
    assert before == [(five["id"], FIVE_NAME, 500, True, 0)]

    class AbandonedError(Exception):
        pass

    infos: list[dict[Any, Any]] = []

    async def change_then_fail(connection: AsyncConnection) -> None:
        await repository.update(
            connection,
            tenant.merchant_id,
            uuid.UUID(five["id"]),
            {"name": "never committed", "points_cost_minor": 100},
        )
        assert connection.info.get(AFTER_COMMIT), "the change registers an after-commit eviction"
        infos.append(connection.info)
        raise AbandonedError

    with pytest.raises(AbandonedError):
        await database.transaction(change_then_fail)
    # The eviction waiting for a commit went with the transaction: it is not left
    # on the pooled connection for its next user.
    assert len(infos) == 1
    assert AFTER_COMMIT not in infos[0]
    assert offers(await redeemable(tenant, unique_id)) == before
    # The cache still works: it fills again, and a committed change still evicts it.
    assert offers(await warm(tenant, unique_id)) == before
    await patch_reward(tenant, five["id"], {"name": "committed"})
    assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == [(five["id"], "committed", 500, True, 0)]


@pytest.mark.postgres_only
async def test_a_fill_raced_by_a_change_is_not_kept(
    tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalogue read before a change commits is answered, but never stored."""
    database = tenant.database
    if database.is_sqlite:
        pytest.skip(NO_NOTIFY)
    cache = database.catalogue_cache
    merchant_id = tenant.merchant_id
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    await settle(database, cache)

    # The plain race, on the app's own cache: an eviction between taking the
    # generation and storing drops the value.
    generation = cache.generation
    merchant_cache.evict_in_process(CATALOGUE_CHANNEL, merchant_id)
    cache.put(merchant_id, [], generation)
    assert cache.get(merchant_id) is None

    # The real read path, with a change committed between its query and its store.
    async def change(connection: AsyncConnection) -> None:
        await service.update_reward(
            connection, merchant_id, five["id"], UpdateReward(points_cost=700)
        )

    original = database.raw_connection

    @asynccontextmanager
    async def change_after_the_query() -> AsyncIterator[Any]:
        async with original() as connection:
            yield connection
        await database.transaction(change)

    with monkeypatch.context() as patched:
        patched.setattr(database, "raw_connection", change_after_the_query)
        catalogue = await repository._catalogue_postgres(database, merchant_id)
    assert [(str(row.id), row.points_cost_minor) for row in catalogue] == [(five["id"], 50_000)]
    assert cache.get(merchant_id) is None  # the value read before the change was dropped
    assert offers(await redeemable(tenant, unique_id)) == [(five["id"], FIVE_NAME, 700, False, 100)]


@pytest.mark.postgres_only
async def test_a_fill_during_the_changing_transaction_is_evicted_at_commit(
    tenant: Tenant, unique_id: str
) -> None:
    """Between the change and its commit, a read of this process still sees the old
    catalogue and may store it; the eviction after the commit drops it (without
    waiting for the commit's notification, which may come late: here this process
    does not hear it at all)."""
    database = tenant.database
    if database.is_sqlite:
        pytest.skip(NO_NOTIFY)
    cache = database.catalogue_cache
    merchant_id = tenant.merchant_id
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    await warm(tenant, unique_id)

    async def change_and_read(connection: AsyncConnection) -> None:
        await service.update_reward(
            connection, merchant_id, five["id"], UpdateReward(points_cost=700)
        )
        assert cache.get(merchant_id) is None  # evicted at once...
        # ...but a concurrent request reads (the uncommitted change is invisible to
        # it) and stores the old catalogue again.
        seen = await repository._catalogue_postgres(database, merchant_id)
        assert [row.points_cost_minor for row in seen] == [50_000]
        assert cache.get(merchant_id) is not None

    async with deaf_to_catalogue_changes(database):
        await database.transaction(change_and_read)
        assert_evicted(tenant)
    assert offers(await redeemable(tenant, unique_id)) == [(five["id"], FIVE_NAME, 700, False, 100)]


@pytest.mark.postgres_only
async def test_a_change_reaches_another_process_by_notify(
    tenant: Tenant, settings: Settings, unique_id: str
) -> None:
    database = tenant.database
    if database.is_sqlite:
        pytest.skip(NO_NOTIFY + ", and another process would not hear of a change")
    merchant_id = tenant.merchant_id
    await funded(tenant, unique_id, 600)
    five = await create(tenant, FIVE_OFF)
    other = Database(settings)  # another API process...
    await other.start()
    try:
        cache = other.catalogue_cache
        # ...whose cache this process's in-process evictions cannot reach: only
        # the database's notifications can.
        merchant_cache._caches.discard(cache)
        assert cache.enabled
        ref = CustomerRef(customer_id=unique_id)

        async def offers_there() -> list[Offer]:
            data = await service.get_redeemable(other, merchant_id, ref)
            return [
                (str(r.id), r.name, r.points_cost, r.can_redeem, r.points_needed)
                for r in data.rewards
            ]

        def shows(expected: Sequence[Offer]) -> Callable[[], Awaitable[bool]]:
            async def condition() -> bool:
                return await offers_there() == list(expected)

            return condition

        async def warm_there() -> list[Offer]:
            await settle(database, cache)
            result = await offers_there()
            assert cache.get(merchant_id) is not None, "not cached in the other process"
            return result

        assert await warm_there() == [(five["id"], FIVE_NAME, 500, True, 0)]

        await patch_reward(tenant, five["id"], {"points_cost": 700})
        dearer = [(five["id"], FIVE_NAME, 700, False, 100)]
        await until(shows(dearer), "showing the new cost in the other process")

        assert await warm_there() == dearer
        six = await create(tenant, SIX_OFF)
        both = [(six["id"], SIX_NAME, 600, True, 0), *dearer]
        await until(shows(both), "showing the new reward in the other process")

        assert await warm_there() == both
        await delete_reward(tenant, five["id"])
        await until(shows(both[:1]), "hiding the deleted reward in the other process")
    finally:
        await other.dispose()
