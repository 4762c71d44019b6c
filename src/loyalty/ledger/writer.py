"""The batching ledger writer (group commit) of a database.

Concurrent movements are queued; one task per process takes up to
``batch_size_max`` of them (waiting at most ``batch_wait_ms_max`` for more
when the queue is short) and applies them in one transaction with
set-based SQL (``loyalty.ledger.engine``). Each movement keeps its own
outcome; a client's future is resolved only after the transaction commits,
so nothing is acknowledged that is not durable. If the process dies
mid-batch, the transaction never commits and no client was answered.

On Postgres up to ``batches_in_flight_max`` batches overlap: the next batch
starts once the previous one holds its row locks, so while one waits for its
commit to reach the disk the next is already working, and a movement on a
customer of an earlier batch still waits for that batch's commit (arrival
order per customer is kept). Every batch locks balance rows in one fixed
order, so batches never deadlock each other, in this process or across
processes. SQLite has one writer: its batches run one after the other.
"""

from __future__ import annotations

from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ids import new_id
from loyalty.ledger.engine.queue import GroupCommitQueue
from loyalty.ledger.engine.store import BatchStore
from loyalty.ledger.storage.postgres import PostgresStore
from loyalty.ledger.storage.sqlite import SqliteStore
from loyalty.metrics import LedgerMetrics
from loyalty.rewards.codes import generate_code


def _draw_code(prefix: str) -> str:
    return generate_code(prefix)  # looked up at each call (tests replace it)


def store_for(database: Database) -> BatchStore:
    if database.is_sqlite:
        return SqliteStore(database)
    return PostgresStore(database)


class LedgerWriter(GroupCommitQueue):
    """The process's writer on ``database`` (Postgres or SQLite)."""

    def __init__(
        self,
        database: Database,
        *,
        batch_size_max: int = 256,
        batch_wait_ms_max: float = 1.0,
        batches_in_flight_max: int = 4,
    ) -> None:
        super().__init__(
            store_for(database),
            clock=utc_now,
            new_id=new_id,
            draw_code=_draw_code,
            batch_size_max=batch_size_max,
            batch_wait_ms_max=batch_wait_ms_max,
            batches_in_flight_max=1 if database.is_sqlite else batches_in_flight_max,
            observer=LedgerMetrics(),
        )
        self.database = database
