"""The batching ledger writer (group commit).

Concurrent movements are queued; one task per process takes up to
``batch_size_max`` of them (waiting at most ``batch_wait_ms_max`` for more
when the queue is short) and applies them in one transaction with
set-based SQL. Each movement keeps its own outcome; a client's future is
resolved only after the transaction commits, so nothing is acknowledged
that is not durable. If the process dies mid-batch, the transaction never
commits and no client was answered.

On Postgres up to ``batches_in_flight_max`` batches overlap: the next batch
starts once the previous one holds its row locks, so while one waits for its
commit to reach the disk the next is already working, and a movement on a
customer of an earlier batch still waits for that batch's commit (arrival
order per customer is kept). Every batch locks balance rows in one fixed
order, so batches never deadlock each other, in this process or across
processes. SQLite has one writer: its batches run one after the other.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import ServiceUnavailableError
from loyalty.ledger import store_postgres, store_sqlite
from loyalty.ledger.batch import Movement, Outcome, error_outcome, plan_batch, resolve_followers
from loyalty.ledger.orders import pending_of_orders

log = structlog.get_logger(__name__)

TRANSIENT_RETRIES_MAX = 8


@dataclass(slots=True)
class _Pending:
    movement: Movement
    future: asyncio.Future[Outcome]


class LedgerWriter:
    def __init__(
        self,
        database: Database,
        *,
        batch_size_max: int = 256,
        batch_wait_ms_max: float = 1.0,
        batches_in_flight_max: int = 4,
    ) -> None:
        self.database = database
        self.batch_size_max = batch_size_max
        self.batches_in_flight_max = 1 if database.is_sqlite else max(1, batches_in_flight_max)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.batches_in_flight_max)
        self.batch_wait_seconds_max = max(batch_wait_ms_max, 0.0) / 1000
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Batch sizes, for the metrics endpoint and tests.
        self.batches_committed = 0
        self.movements_committed = 0

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        """Finish every queued movement, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, movement: Movement) -> Outcome:
        """Queue one movement and wait until its batch has committed."""
        if self._closing or self._task is None:
            raise ServiceUnavailableError("The server is shutting down; retry the request.")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(movement, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    if self._in_flight:
                        await asyncio.gather(*self._in_flight, return_exceptions=True)
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if len(self._queue) < self.batch_size_max and self.batch_wait_seconds_max > 0:
                # A short queue: give concurrent requests a moment to join the batch.
                await asyncio.sleep(self.batch_wait_seconds_max)
            await self._slots.acquire()
            batch = self._queue[: self.batch_size_max]
            del self._queue[: self.batch_size_max]
            locked = asyncio.Event()
            task = asyncio.create_task(self._run_batch(batch, locked))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            # The next batch may start once this one holds its locks (or is done).
            await asyncio.wait(
                [task, asyncio.ensure_future(locked.wait())], return_when=asyncio.FIRST_COMPLETED
            )

    async def _run_batch(self, batch: list[_Pending], locked: asyncio.Event) -> None:
        try:
            await self._execute(batch, locked)
        except Exception as error:  # never let the writer die with clients waiting
            log.exception("ledger_writer_error")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        finally:
            locked.set()
            self._slots.release()

    async def _execute(self, batch: list[_Pending], locked: asyncio.Event) -> None:
        movements = [pending.movement for pending in batch]
        try:
            outcomes = await self._commit(movements, locked)
        except Exception as error:
            if self._unavailable(error) or len(batch) == 1:
                self._fail(batch, error)
                return
            # Something unexpected: isolate it by applying each movement alone.
            log.exception("ledger_batch_failed", batch_size=len(batch))
            for pending in batch:
                await self._execute([pending], locked)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(outcome)

    def _fail(self, batch: list[_Pending], error: Exception) -> None:
        if self._unavailable(error):
            log.warning("ledger_database_unavailable", error=str(error), batch_size=len(batch))
            outcome = error_outcome(
                ServiceUnavailableError("The database is unavailable; retry the request.")
            )
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_result(outcome)
            return
        log.error("ledger_movement_failed", error=repr(error))
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    async def _commit(self, movements: list[Movement], locked: asyncio.Event) -> list[Outcome]:
        """One transaction for the batch; retried as a whole on transient failures."""
        started = time.perf_counter()
        for attempt in range(TRANSIENT_RETRIES_MAX + 1):
            try:
                if self.database.is_sqlite:
                    outcomes = await self._commit_sqlite(movements, locked)
                else:
                    outcomes = await self._commit_postgres(movements, locked)
            except Exception as error:
                if attempt == TRANSIENT_RETRIES_MAX or not self._transient(error):
                    raise
                log.warning("ledger_batch_retry", attempt=attempt + 1, error=str(error))
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            self.batches_committed += 1
            self.movements_committed += len(movements)
            log.debug(
                "ledger_batch_committed",
                size=len(movements),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            return outcomes
        raise AssertionError("unreachable")

    async def _commit_postgres(
        self, movements: list[Movement], locked: asyncio.Event
    ) -> list[Outcome]:
        async with self.database.raw_connection() as connection, connection.transaction():
            return await self._plan_and_apply(store_postgres, connection, movements, locked)

    async def _commit_sqlite(
        self, movements: list[Movement], locked: asyncio.Event
    ) -> list[Outcome]:
        connection = self.database.sqlite_writer
        assert connection is not None, "Database.start() opens the writer connection"
        async with self.database.write_lock:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                outcomes = await self._plan_and_apply(store_sqlite, connection, movements, locked)
                await connection.execute("COMMIT")
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            return outcomes

    async def _plan_and_apply(
        self, store: Any, connection: Any, movements: list[Movement], locked: asyncio.Event
    ) -> list[Outcome]:
        now = utc_now()
        claimed, stored = await store.claim_keys(connection, movements, now)
        # Replays of keys already used need no balance.
        to_apply = [m for m in movements if m.key_ref is None or m.key_ref in claimed]
        customers = await store.lock_customers(connection, to_apply) if to_apply else {}
        rewards = None
        if any(movement.reward is not None for movement in to_apply):
            rewards = await store.load_reward_context(connection, to_apply, customers)
        order_context = None
        if any(movement.order is not None for movement in to_apply):
            order_context = await store.load_order_context(connection, to_apply)
        # Reads nothing unless the batch has holds, lots, tiers or maintenance.
        times = await store.load_lifecycle_context(
            connection,
            to_apply,
            customers,
            now,
            pending_of_orders(order_context) if order_context is not None else None,
        )
        action_context = None
        if any(movement.action is not None for movement in to_apply):
            action_context = await store.load_action_context(connection, to_apply, customers, now)
        locked.set()
        plan = plan_batch(
            movements,
            claimed=claimed,
            stored=stored,
            customers=customers,
            now=now,
            rewards=rewards,
            times=times,
            order_context=order_context,
            action_context=action_context,
        )
        await store.apply_plan(connection, plan, now)
        if plan.rewards:
            await store.apply_rewards(connection, plan.rewards, now)
        if plan.lifecycle:
            await store.apply_lifecycle(connection, plan.lifecycle)
        if plan.orders:
            await store.apply_orders(connection, plan.orders, now)
        if plan.actions:
            await store.apply_actions(connection, plan.actions)
        return resolve_followers(plan)

    def _store_check(self, name: str) -> Callable[[BaseException], bool]:
        store = store_sqlite if self.database.is_sqlite else store_postgres
        check: Callable[[BaseException], bool] = getattr(store, name)
        return check

    def _transient(self, error: BaseException) -> bool:
        return self._store_check("is_transient")(error)

    def _unavailable(self, error: BaseException) -> bool:
        return self._store_check("is_unavailable")(error)
