"""Engine, driver-level pools and transactions.

Points movements are written by the ledger's batching writer on the driver
connections opened here (``raw_pool`` on Postgres, ``sqlite_writer``);
every other write goes through ``Database.transaction(fn)``, which runs
``fn`` in a transaction, commits, and retries transient failures (Postgres
deadlocks and serialisation failures, SQLite's busy lock) so contention never
reaches a client as an error. On SQLite, writers of this process queue on an asyncio
lock and open their transaction with ``BEGIN IMMEDIATE`` so that writers of
other processes wait on SQLite's own lock (busy timeout) instead of failing.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite
import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from loyalty.auth.cache import KeyCache, RevocationListener
from loyalty.db.merchant_cache import AFTER_COMMIT, CATALOGUE_CHANNEL, MerchantCache
from loyalty.db.wakeup import CHANNEL, EVENTS_WRITTEN, EventsWakeup
from loyalty.settings import Settings

if TYPE_CHECKING:  # asyncpg is imported when a Postgres database starts
    import asyncpg

T = TypeVar("T")
log = structlog.get_logger(__name__)

TRANSIENT_RETRIES_MAX = 8
SQLITE_BUSY_TIMEOUT_MS = 30_000
_POSTGRES_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})


class DatabaseURLError(ValueError):
    """The database URL names no supported database."""


def async_url(url: str) -> str:
    """Turn the user's SQLAlchemy URL into one with our async driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseURLError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


def is_unavailable(error: BaseException) -> bool:
    """The database cannot be reached (down, restarting, connection lost)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError | asyncio.TimeoutError):
        return True
    # asyncpg is imported only on Postgres: if it never was, no error is one of its.
    asyncpg = sys.modules.get("asyncpg")
    return (
        asyncpg is not None
        and isinstance(
            error,
            asyncpg.exceptions.ConnectionDoesNotExistError
            | asyncpg.exceptions.InterfaceError
            | asyncpg.exceptions.CannotConnectNowError
            | asyncpg.exceptions.AdminShutdownError
            | asyncpg.exceptions.TooManyConnectionsError
            | asyncpg.exceptions.ConnectionFailureError
            # A connection left mid-operation by a lost server: treated as lost.
            | asyncpg.exceptions.InternalClientError,
        )
    ) or (isinstance(error, DBAPIError) and error.orig is not None and is_unavailable(error.orig))


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, OperationalError) and "database is locked" in str(error):
        return True
    if isinstance(error, DBAPIError):
        original = error.orig
        sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
        if sqlstate in _POSTGRES_TRANSIENT_SQLSTATES:
            return True
        cause = getattr(original, "__cause__", None)
        if getattr(cause, "sqlstate", None) in _POSTGRES_TRANSIENT_SQLSTATES:
            return True
    return False


class Database:
    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self.url = async_url(settings.database_url)
        self.dialect = make_url(self.url).get_backend_name()
        size = pool_size or settings.database_pool_size
        self.is_sqlite = self.dialect == "sqlite"
        options: dict[str, Any] = {"pool_pre_ping": False}
        if self.is_sqlite:
            # Sized so that connections are kept, not closed and reopened (each
            # aiosqlite connection is a thread).
            options.update(pool_size=size, max_overflow=size, pool_timeout=60)
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            # pre_ping: after a database restart, stale pooled connections are
            # replaced on checkout instead of failing the request.
            options.update(pool_size=size, max_overflow=size, pool_timeout=60, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._write_lock: asyncio.Lock | None = None
        self._sqlite_synchronous = settings.sqlite_synchronous
        self._raw_pool_size = settings.raw_pool_size
        # Driver-level handles for the hot paths, opened by ``start()``.
        self.raw_pool: asyncpg.Pool | None = None
        self._raw_slots: asyncio.Semaphore | None = None
        # Per-query coalescers of hot point reads (see ``loyalty.db.coalesce``).
        self.read_coalescers: dict[str, Any] = {}
        self.sqlite_writer: aiosqlite.Connection | None = None
        self.sqlite_reader: aiosqlite.Connection | None = None
        # Verified API keys (on only while revocations can reach this process).
        self.key_cache = KeyCache()
        # Each merchant's active reward catalogue (loyalty.rewards.repository).
        self.catalogue_cache: MerchantCache[Any] = MerchantCache(CATALOGUE_CHANNEL)
        self._revocation_listener: RevocationListener | None = None
        # Poked after every commit that wrote events (see ``loyalty.db.wakeup``).
        self.events_wakeup = EventsWakeup(None if self.is_sqlite else self._notify_events)
        if self.is_sqlite:
            _configure_sqlite(self.engine, settings.sqlite_synchronous)

    async def start(self) -> None:
        """Open the driver-level connections the ledger writer and hot reads use."""
        if self.is_sqlite:
            if self.sqlite_writer is None:
                self.sqlite_writer = await open_sqlite(self.url, self._sqlite_synchronous)
                self.sqlite_reader = await open_sqlite(self.url, self._sqlite_synchronous)
                self.sqlite_reader.row_factory = sqlite3.Row
        elif self.raw_pool is None:
            import asyncpg

            self.raw_pool = await asyncpg.create_pool(
                driver_url(self.url),
                min_size=1,
                max_size=self._raw_pool_size,
                reset=_keep_session,
                max_inactive_connection_lifetime=300,
            )
            # One LISTEN connection per process: revoked keys, and commits of events
            # (which wake this process's webhook deliverer, if it runs one).
            self._revocation_listener = RevocationListener(
                driver_url(self.url),
                self.key_cache,
                channels={
                    CHANNEL: lambda _payload: self.events_wakeup.wake(),
                    CATALOGUE_CHANNEL: self.catalogue_cache.on_notification,
                },
                caches=(self.catalogue_cache,),
            )
            await self._revocation_listener.start()

    @property
    def write_lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (one consistent snapshot on both databases)."""
        async with self.engine.connect() as connection, connection.begin():
            yield connection

    async def transaction(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` in one write transaction and commit; retry transient failures."""
        for attempt in range(TRANSIENT_RETRIES_MAX + 1):
            try:
                if self.is_sqlite:
                    async with self.write_lock:
                        return await self._run_once(work, write=True)
                return await self._run_once(work, write=False)
            except DBAPIError as error:
                if attempt == TRANSIENT_RETRIES_MAX or not _is_transient(error):
                    raise
                log.warning("transaction_retry", attempt=attempt + 1, reason=str(error.orig))
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        raise AssertionError("unreachable")

    async def _run_once(self, work: Callable[[AsyncConnection], Awaitable[T]], *, write: bool) -> T:
        async with self.engine.connect() as connection:
            if write:
                connection = await connection.execution_options(loyalty_write=True)
            try:
                async with connection.begin():
                    result = await work(connection)
            finally:
                # The flags live on the pooled connection: never left for its next user.
                wrote_events = connection.info.pop(EVENTS_WRITTEN, False)
                after_commit = connection.info.pop(AFTER_COMMIT, ())
            if wrote_events:
                self.events_wakeup.poke()
            for callback in after_commit:
                callback()
            return result

    async def _notify_events(self) -> None:
        """Tell every process listening (``loyalty worker``) that events committed: on
        the driver's pool once started (up to a hundred times a second per process
        under load; SQLAlchemy's connection and transaction cost several times more)."""
        if self.raw_pool is not None:
            async with self.raw_connection() as raw:
                await raw.execute(f"SELECT pg_notify('{CHANNEL}', '')")
            return
        async with self.engine.connect() as connection:
            await connection.execute(text(f"SELECT pg_notify('{CHANNEL}', '')"))
            await connection.commit()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A driver connection from the pool, handed out first come, first served.

        asyncpg's pool queue lets a newcomer take a connection that a woken
        waiter was about to get, and that waiter goes to the back of the line:
        under load some requests starve (seconds at p99 with a small pool). A
        FIFO semaphore with one permit per connection in front of it means the
        pool itself never has waiters.
        """
        pool = self.raw_pool
        assert pool is not None, "Database.start() opens the pool"
        if self._raw_slots is None:
            self._raw_slots = asyncio.Semaphore(self._raw_pool_size)
        async with self._raw_slots:
            connection = await pool.acquire()
            try:
                yield connection
            except BaseException:
                # A connection that failed or was cancelled mid-operation may be
                # left in a state the next user would trip over (the pool's
                # reset is a no-op, see _keep_session): close it, never reuse it.
                connection.terminate()
                raise
            finally:
                await pool.release(connection)

    async def dispose(self) -> None:
        await self.events_wakeup.close()
        if self._revocation_listener is not None:
            await self._revocation_listener.stop()
            self._revocation_listener = None
        if self.raw_pool is not None:
            await self.raw_pool.close()
            self.raw_pool = None
        for connection in (self.sqlite_writer, self.sqlite_reader):
            if connection is not None:
                await connection.close()
        self.sqlite_writer = self.sqlite_reader = None
        await self.engine.dispose()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to reset (no session state is ever changed), which
    saves asyncpg's default RESET ALL round trip on every release. asyncpg still
    rolls back a transaction left open."""


def driver_url(url: str) -> str:
    """The plain postgresql:// URL asyncpg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def open_sqlite(url: str, synchronous: str) -> aiosqlite.Connection:
    """A driver-level SQLite connection with the same settings as the engine's."""
    path = make_url(url).database or ":memory:"
    connection = await aiosqlite.connect(path, isolation_level=None)
    for pragma in _sqlite_pragmas(synchronous):
        await connection.execute(pragma)
    return connection


def _sqlite_pragmas(synchronous: str) -> list[str]:
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "PRAGMA foreign_keys=ON",
    ]


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _sqlite_pragmas(synchronous):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = (
            "IMMEDIATE" if connection.get_execution_options().get("loyalty_write") else "DEFERRED"
        )
        connection.exec_driver_sql(f"BEGIN {mode}")
