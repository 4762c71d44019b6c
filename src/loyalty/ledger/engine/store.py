"""The boundary between the ledger engine and a database: ``BatchStore``, implemented
in ``loyalty.ledger.storage``.

A store opens one transaction per batch (``BatchStore.batch``) and, inside it,
claims idempotency keys, locks customers, reads the rows the operations asked
for and writes the changes, checking every write's row count the same way on
every database (``storage.counts``). Implemented on Postgres (asyncpg), SQLite
(aiosqlite) and in memory (tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from loyalty.ledger.engine.changes import Changes
from loyalty.ledger.engine.rows import KeyRef, LockedCustomer, StoredKey
from loyalty.ledger.engine.tables import Prefetch, Snapshot


class BatchSession(Protocol):
    async def claim_keys(
        self, leaders: Mapping[KeyRef, str], now: datetime
    ) -> tuple[set[KeyRef], dict[KeyRef, StoredKey]]:
        """Claim each key (with its request's fingerprint); those claimed, what others hold."""
        ...

    async def lock_customers(
        self,
        by_id: set[tuple[uuid.UUID, str]],
        by_email: set[tuple[uuid.UUID, str]],
        by_uuid: set[tuple[uuid.UUID, uuid.UUID]],
    ) -> list[LockedCustomer]:
        """Lock the balances of the customers named (platform id, email or UUID), in
        ``(merchant_id, customer_id)`` order. A customer erased while the store waited
        for its lock is not locked by platform id or email (it no longer has them)."""
        ...

    async def load(self, request: Prefetch, snapshot: Snapshot, now: datetime) -> None:
        """Read the requested rows into the snapshot's tables (customer rewards locked)."""
        ...

    async def write(self, changes: Changes, now: datetime) -> None:
        """Apply every change; raise if any write's row count is not the expected one.
        Erasures come last, so that they blank the events the batch wrote too."""
        ...


class BatchStore(Protocol):
    def batch(self) -> AbstractAsyncContextManager[BatchSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...

    def is_transient(self, error: BaseException) -> bool:
        """Worth running the whole batch again (a deadlock, a code drawn twice...)."""
        ...

    def is_unavailable(self, error: BaseException) -> bool:
        """The database cannot be reached: clients get 503."""
        ...
