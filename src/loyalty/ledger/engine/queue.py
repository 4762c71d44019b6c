"""The group-commit queue: movements gathered into batches, each one transaction.

One task takes up to ``batch_size_max`` queued movements (waiting at most
``batch_wait_ms_max`` for more when the queue is short) and runs them as one
batch (``engine.batch``) in one transaction of its ``BatchStore``; a client's
future is resolved only after that commit. Up to ``batches_in_flight_max``
batches overlap, the next starting once the previous one holds its locks.
Transient failures re-run the whole batch; an unexpected one re-runs it
movement by movement, so one bad movement cannot fail the others.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from loyalty.errors import ServiceUnavailableError
from loyalty.ledger.engine.batch import run_batch
from loyalty.ledger.engine.planner import error_outcome
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.engine.store import BatchStore

log = structlog.get_logger(__name__)

TRANSIENT_RETRIES_MAX = 8


class QueueObserver(Protocol):
    """What the queue reports (the metrics, ``loyalty.metrics.LedgerMetrics``)."""

    def batch_committed(self, size: int, seconds: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def movements(self, outcome: str, count: int) -> None: ...


class _Unobserved:
    def batch_committed(self, size: int, seconds: float) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass

    def movements(self, outcome: str, count: int) -> None:
        pass


def outcome_name(outcome: Outcome) -> str:
    """applied, refused (a 4xx answer), replayed or failed (5xx: unavailable)."""
    if outcome.replayed:
        return "replayed"
    if outcome.status_code >= 500:
        return "failed"
    return "refused" if outcome.status_code >= 400 else "applied"


@dataclass(slots=True)
class _Pending:
    movement: Movement
    future: asyncio.Future[Outcome]


class GroupCommitQueue:
    def __init__(
        self,
        store: BatchStore,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], uuid.UUID],
        draw_code: Callable[[str], str],
        batch_size_max: int = 256,
        batch_wait_ms_max: float = 1.0,
        batches_in_flight_max: int = 4,
        observer: QueueObserver | None = None,
    ) -> None:
        self.store = store
        self.observer: QueueObserver = observer or _Unobserved()
        self.clock = clock
        self.new_id = new_id
        self.draw_code = draw_code
        self.batch_size_max = batch_size_max
        self.batches_in_flight_max = max(1, batches_in_flight_max)
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

    async def submit_many(self, movements: list[Movement]) -> list[Outcome]:
        """Queue many movements at once, in this order (a bulk caller such as an
        import: no task per movement), and wait until all have committed."""
        if self._closing or self._task is None:
            raise ServiceUnavailableError("The server is shutting down; retry the request.")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Outcome]] = [loop.create_future() for _ in movements]
        self._queue.extend(map(_Pending, movements, futures))
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            self.observer.queue_depth(len(self._queue))
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
            self.observer.queue_depth(len(self._queue))
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
            unanswered = [pending for pending in batch if not pending.future.done()]
            self.observer.movements("failed", len(unanswered))
            for pending in unanswered:
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
        counts: dict[str, int] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            name = outcome_name(outcome)
            counts[name] = counts.get(name, 0) + 1
            if not pending.future.done():
                pending.future.set_result(outcome)
        for name, count in counts.items():
            self.observer.movements(name, count)

    def _fail(self, batch: list[_Pending], error: Exception) -> None:
        self.observer.movements("failed", len(batch))
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
                async with self.store.batch() as session:
                    outcomes = await run_batch(
                        session,
                        movements,
                        now=self.clock(),
                        new_id=self.new_id,
                        draw_code=self.draw_code,
                        on_locked=locked.set,
                    )
            except Exception as error:
                if attempt == TRANSIENT_RETRIES_MAX or not self.store.is_transient(error):
                    raise
                log.warning("ledger_batch_retry", attempt=attempt + 1, error=str(error))
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
                continue
            self.batches_committed += 1
            self.movements_committed += len(movements)
            self.observer.batch_committed(len(movements), time.perf_counter() - started)
            log.debug(
                "ledger_batch_committed",
                size=len(movements),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            return outcomes
        raise AssertionError("unreachable")

    def _transient(self, error: BaseException) -> bool:
        return self.store.is_transient(error)

    def _unavailable(self, error: BaseException) -> bool:
        return self.store.is_unavailable(error)
