"""A per-process cache of verified API keys, invalidated at revocation.

Authenticating a request costs a database round trip; the cache saves it for
keys seen recently. Revocation stays immediate:

- the revoking transaction sends ``NOTIFY loyalty_api_key_revoked`` (Postgres
  delivers it when that transaction commits) and every process's listener
  evicts the key;
- a revocation made in this process evicts it here synchronously, too;
- while the listener is not connected (start-up, a lost connection) the cache
  is off and every request is checked against the database;
- entries expire after ``ttl_seconds`` whatever happens.

SQLite has no NOTIFY, so on SQLite the cache stays off.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from loyalty.auth.schemas import Principal

if TYPE_CHECKING:  # imported when the listener connects (Postgres only)
    import asyncpg

log = structlog.get_logger(__name__)

REVOCATION_CHANNEL = "loyalty_api_key_revoked"
RECONNECT_SECONDS = 1.0

_caches: weakref.WeakSet[KeyCache] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    prefix: str
    expires_at: float


class KeyCache:
    def __init__(self, *, ttl_seconds: float = 60.0, size_max: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.size_max = size_max
        self.enabled = False
        self._entries: dict[str, _Entry] = {}
        _caches.add(self)

    def get(self, token_sha256: str) -> Principal | None:
        if not self.enabled:
            return None
        entry = self._entries.get(token_sha256)
        if entry is None:
            return None
        if entry.expires_at < time.monotonic():
            del self._entries[token_sha256]
            return None
        return entry.principal

    def put(self, token_sha256: str, prefix: str, principal: Principal) -> None:
        if not self.enabled:
            return
        if len(self._entries) >= self.size_max:
            self._entries.clear()
        self._entries[token_sha256] = _Entry(principal, prefix, time.monotonic() + self.ttl_seconds)

    def evict(self, prefix: str) -> None:
        for digest in [d for d, entry in self._entries.items() if entry.prefix == prefix]:
            del self._entries[digest]

    def disable(self) -> None:
        self.enabled = False
        self._entries.clear()


class Switchable(Protocol):
    """A cache that is on only while notifications of its changes can arrive."""

    def enable(self) -> None: ...

    def disable(self) -> None: ...


def _notified(callback: Callable[[str], None]) -> Callable[[object, int, str, str], None]:
    def on_notification(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        callback(payload)

    return on_notification


def evict_in_process(prefix: str) -> None:
    """Drop a revoked key from every cache of this process, at once."""
    for cache in list(_caches):
        cache.evict(prefix)


class RevocationListener:
    """Keeps a LISTEN connection open and the caches on only while it is.

    ``channels``: other channels the same connection listens to, each with what
    to call with a notification's payload (the webhook deliverers' wake-up, the
    merchant caches' evictions); ``caches``: other caches that are on only
    while the connection is up."""

    def __init__(
        self,
        dsn: str,
        cache: KeyCache,
        channels: Mapping[str, Callable[[str], None]] | None = None,
        caches: Sequence[Switchable] = (),
    ) -> None:
        self.dsn = dsn
        self.cache = cache
        self.channels = dict(channels or {})
        self.caches = tuple(caches)
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self._connect()
        if self._connection is None:
            self._schedule_reconnect()

    async def stop(self) -> None:
        self._closing = True
        self._disable()
        if self._task is not None:
            self._task.cancel()
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()

    async def _connect(self) -> None:
        import asyncpg

        try:
            connection = await asyncpg.connect(self.dsn, timeout=5)
            await connection.add_listener(REVOCATION_CHANNEL, self._on_revoked)
            for channel, callback in self.channels.items():
                await connection.add_listener(channel, _notified(callback))
            connection.add_termination_listener(self._on_lost)
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            log.warning("key_cache_listener_unavailable", error=str(error))
            return
        self._connection = connection
        self.cache.enabled = True
        for cache in self.caches:
            cache.enable()

    def _disable(self) -> None:
        self.cache.disable()
        for cache in self.caches:
            cache.disable()

    def _on_revoked(self, _connection: object, _pid: int, _channel: str, prefix: str) -> None:
        self.cache.evict(prefix)

    def _on_lost(self, _connection: object) -> None:
        self._disable()
        self._connection = None
        if not self._closing:
            log.warning("key_cache_listener_lost")
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closing and self._connection is None:
            await asyncio.sleep(RECONNECT_SECONDS)
            await self._connect()
