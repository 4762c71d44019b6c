"""Per-process caches of merchant-wide values that rarely change (the reward
catalogue), emptied when they change.

A hot read (the loyalty widget's redeemable rewards) need not read what every
request of a shop shares from the database each time. The rules are those of the
API key cache (``loyalty.auth.cache``):

- the transaction that changes a cached value sends ``NOTIFY <channel>,
  '<merchant id>'`` (``announce``); Postgres delivers it when that transaction
  commits, and every process's listener evicts the merchant;
- the changing process evicts it too, at once and again after the commit, so
  that its own next read sees the change;
- a value read before an eviction is never stored after it: a fill takes the
  cache's generation before reading and is dropped if the generation moved;
- while the listener is not connected (start-up, a lost connection) the cache is
  off and every read goes to the database; entries expire after ``ttl_seconds``
  whatever happens.

SQLite has no NOTIFY, so on SQLite these caches stay off.
"""

from __future__ import annotations

import time
import uuid
import weakref
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

# Each merchant's active reward catalogue (loyalty.rewards.repository).
CATALOGUE_CHANNEL = "loyalty_catalogue_changed"

# Callbacks run after the transaction on a connection commits (loyalty.db.engine).
AFTER_COMMIT = "loyalty_after_commit"

_caches: weakref.WeakSet[MerchantCache[object]] = weakref.WeakSet()


class MerchantCache(Generic[T]):
    def __init__(self, channel: str, *, ttl_seconds: float = 60.0, size_max: int = 10_000) -> None:
        self.channel = channel
        self.ttl_seconds = ttl_seconds
        self.size_max = size_max
        self.enabled = False
        self.generation = 0
        self._entries: dict[uuid.UUID, tuple[T, float]] = {}
        _caches.add(self)  # type: ignore[arg-type]

    def get(self, merchant_id: uuid.UUID) -> T | None:
        if not self.enabled:
            return None
        entry = self._entries.get(merchant_id)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[merchant_id]
            return None
        return entry[0]

    def put(self, merchant_id: uuid.UUID, value: T, generation: int) -> None:
        """Keep ``value``, read after ``generation`` was taken, unless something was
        evicted since (it may be older than the eviction)."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._entries) >= self.size_max:
            self._entries.clear()
        self._entries[merchant_id] = (value, time.monotonic() + self.ttl_seconds)

    def evict(self, merchant_id: uuid.UUID) -> None:
        self.generation += 1
        self._entries.pop(merchant_id, None)

    def enable(self) -> None:
        self.generation += 1  # fills begun while notifications were missed are dropped
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False
        self.generation += 1
        self._entries.clear()

    def on_notification(self, payload: str) -> None:
        try:
            merchant_id = uuid.UUID(payload)
        except ValueError:
            self._entries.clear()
            self.generation += 1
            return
        self.evict(merchant_id)


def evict_in_process(channel: str, merchant_id: uuid.UUID) -> None:
    for cache in list(_caches):
        if cache.channel == channel:
            cache.evict(merchant_id)


async def announce(connection: AsyncConnection, channel: str, merchant_id: uuid.UUID) -> None:
    """In the transaction changing a cached value: every process evicts the merchant
    when it commits (Postgres), this one at once and after the commit too."""
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_notify(:channel, :merchant)"),
            {"channel": channel, "merchant": str(merchant_id)},
        )
    evict_in_process(channel, merchant_id)
    connection.info.setdefault(AFTER_COMMIT, []).append(
        lambda: evict_in_process(channel, merchant_id)
    )
