"""The one protocol every operation kind implements, and the movement envelope.

An operation kind is one module in ``loyalty.ledger.operations``: a frozen value
type holding what the request asked for, implementing ``Operation``:

- ``locks()`` — every customer it needs, by reference; the engine locks all of
  a batch's customers at once, in one fixed order, so no two batches deadlock
  whatever their operations (a transfer names two customers);
- ``prefetch(merchant_id, snapshot, want)`` — the rows it will read, by table,
  given what has been read so far (called until no operation wants more);
- ``decide(merchant_id, tx)`` — pure: reads and changes rows only through
  ``BatchTx``, returns its ``Result`` or raises a ``LoyaltyError``.

The engine knows no kind: adding one is adding a module.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from loyalty.actors import current_actor
from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.rows import KeyRef
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """An operation's answer: its status and its body (a msgspec struct or plain data),
    encoded once, where the engine stores it under the idempotency key."""

    status_code: int
    body: Any


class Operation(Protocol):
    def locks(self) -> Sequence[CustomerRef]: ...

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None: ...

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Movement:
    """One request to the ledger: its merchant, its idempotency key and the operation."""

    merchant_id: uuid.UUID
    operation: Operation
    idempotency_key: str | None = None
    request_fingerprint: str = ""
    # Who asked (the audit trail), captured when the movement is made.
    actor: str = dataclasses.field(default_factory=current_actor)

    @property
    def key_ref(self) -> KeyRef | None:
        if self.idempotency_key is None:
            return None
        return (self.merchant_id, self.idempotency_key)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the client receives; ``replayed`` when it comes from an earlier request."""

    status_code: int
    body: bytes
    replayed: bool = False
