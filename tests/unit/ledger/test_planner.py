"""The planner and the engine's batch, in process on the memory store."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

import pytest

from loyalty.customers.refs import CustomerRef
from loyalty.ledger.engine.batch import run_batch
from loyalty.ledger.engine.changes import Changes
from loyalty.ledger.engine.protocol import Result
from loyalty.ledger.engine.rows import StoredKey
from loyalty.ledger.engine.tables import NotPrefetchedError, Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx
from loyalty.ledger.operations.adjust import Adjust
from loyalty.ledger.operations.holds import Cancel
from tests.support.engine import MemoryLedger, body, ref


async def test_each_movement_is_decided_alone_in_arrival_order() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 10)
    outcomes = await ledger.batch(
        [
            ledger.movement(Adjust(ref(ada), -800)),
            ledger.movement(Adjust(ref(ada), -800)),  # only 2 left: refused alone
            ledger.movement(Adjust(ref(ada), 500)),
            ledger.movement(Adjust(ref(ada), -600)),
        ]
    )
    assert [o.status_code for o in outcomes] == [201, 422, 201, 201]
    assert body(outcomes[1])["error"]["code"] == "insufficient_points"
    assert ledger.balance(ada) == 1
    assert [e.balance_after_minor for e in ledger.entries(ada)] == [1000, 200, 700, 100]
    assert ledger.stored(ada).last_sequence == 4


async def test_duplicates_of_a_key_follow_their_leader_and_another_request_is_refused() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    credit = Adjust(ref(ada), 500)
    outcomes = await ledger.batch(
        [
            ledger.movement(credit, key="k", fingerprint="a"),
            ledger.movement(credit, key="k", fingerprint="a"),
            ledger.movement(Adjust(ref(ada), 900), key="k", fingerprint="b"),
        ]
    )
    assert [o.status_code for o in outcomes] == [201, 201, 422]
    assert outcomes[1].body == outcomes[0].body
    assert (outcomes[0].replayed, outcomes[1].replayed) == (False, True)
    assert body(outcomes[2])["error"]["code"] == "idempotency_key_reused"
    assert ledger.balance(ada) == 5
    # In a later batch the stored reply is replayed without touching the customer.
    (again,) = await ledger.batch([ledger.movement(credit, key="k", fingerprint="a")])
    assert again.replayed
    assert again.body == outcomes[0].body
    assert ledger.balance(ada) == 5


async def test_a_key_used_before_answers_each_request_from_what_it_holds() -> None:
    """A wrong request with a stored key must not make the right retry behind it fail
    (found by the model: the retry was compared with the wrong request)."""
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    debit = Adjust(ref(ada), -100)
    (first,) = await ledger.batch([ledger.movement(debit, key="k", fingerprint="debit")])
    assert body(first)["error"]["code"] == "insufficient_points"
    wrong, retry = await ledger.batch(
        [
            ledger.movement(Adjust(ref(ada), 100), key="k", fingerprint="credit"),
            ledger.movement(debit, key="k", fingerprint="debit"),
        ]
    )
    assert body(wrong)["error"]["code"] == "idempotency_key_reused"
    assert (retry.status_code, retry.body, retry.replayed) == (422, first.body, True)
    assert ledger.balance(ada) == 0


async def test_a_key_still_in_progress_answers_409_and_a_refused_request_frees_its_key() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada")
    ledger.store.tables.keys[(ledger.merchant_id, "busy")] = StoredKey("f", 0, "")
    (busy,) = await ledger.batch([ledger.movement(Adjust(ref(ada), 100), key="busy")])
    assert busy.status_code == 409
    assert body(busy)["error"]["code"] == "idempotency_request_in_progress"
    # Validation failures are not stored: the key can be used again once corrected.
    (invalid,) = await ledger.batch([ledger.movement(Adjust(ref(ada), 150), key="free")])
    assert invalid.status_code == 422
    assert (ledger.merchant_id, "free") not in ledger.store.tables.keys
    (fixed,) = await ledger.batch([ledger.movement(Adjust(ref(ada), 200), key="free")])
    assert fixed.status_code == 201
    assert ledger.store.tables.keys[(ledger.merchant_id, "free")].response_status == 201


async def test_an_unknown_customer_is_404_and_changes_nothing() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 1)
    outcomes = await ledger.batch(
        [
            ledger.movement(Adjust(CustomerRef(customer_id="nobody"), 100)),
            ledger.movement(Adjust(CustomerRef(customer_email="ada@example.com"), 100)),
            ledger.movement(Adjust(ref(ada), 100)),
        ]
    )
    assert [o.status_code for o in outcomes] == [404, 404, 201]
    assert body(outcomes[0])["error"]["code"] == "customer_not_found"


async def test_a_customer_named_by_id_and_by_email_is_one_row_updated_once() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", email="ada@example.com")
    outcomes = await ledger.batch(
        [
            ledger.movement(Adjust(ref(ada), 100)),
            ledger.movement(Adjust(CustomerRef(customer_email="ada@example.com"), 200)),
        ]
    )
    assert [o.status_code for o in outcomes] == [201, 201]
    assert ledger.balance(ada) == 3
    assert ledger.stored(ada).last_sequence == 2


@dataclasses.dataclass(frozen=True)
class _ReadsWithoutAsking:
    """A faulty kind: it reads a pending credit it never prefetched."""

    customer: CustomerRef

    def locks(self) -> Sequence[CustomerRef]:
        return (self.customer,)

    def prefetch(self, merchant_id: uuid.UUID, snapshot: Snapshot, want: Prefetch) -> None:
        return None

    def decide(self, merchant_id: uuid.UUID, tx: BatchTx) -> Result:
        tx.snapshot.pending.get((merchant_id, uuid.uuid4()))
        return Result(200, {})


async def test_reading_a_row_no_operation_asked_for_is_a_programmer_error() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 1)
    with pytest.raises(NotPrefetchedError, match="pending_credits"):
        await ledger.one(_ReadsWithoutAsking(ref(ada)))
    # Asked for, an absent row is simply absent.
    outcome = await ledger.one(Cancel(ref(ada), uuid.uuid4()))
    assert body(outcome)["error"]["code"] == "pending_credit_not_found"


async def test_a_failed_batch_leaves_the_store_as_it_was() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 1)
    entries_before = list(ledger.store.tables.entries)
    with pytest.raises(NotPrefetchedError):
        await ledger.batch(
            [ledger.movement(Adjust(ref(ada), 100)), ledger.movement(_ReadsWithoutAsking(ref(ada)))]
        )
    assert ledger.balance(ada) == 1
    assert ledger.store.tables.entries == entries_before


async def test_the_store_checks_every_write_count() -> None:
    """A balance whose sequence moved under the batch is a lost update: refused."""
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 1)
    async with ledger.store.batch() as session:
        real_write = session.write

        async def write(changes: Changes, now: datetime) -> None:
            ledger.stored(ada).last_sequence += 1  # another writer got there first
            await real_write(changes, now)

        session.write = write  # type: ignore[method-assign]
        with pytest.raises(AssertionError, match="balances"):
            await run_batch(
                session,
                [ledger.movement(Adjust(ref(ada), 100))],
                now=ledger.now,
                new_id=ledger.new_id,
                draw_code=ledger.draw_code,
            )


async def test_the_queue_answers_each_movement_after_its_batch() -> None:
    ledger = MemoryLedger()
    ada = ledger.customer("ada", 5)
    queue = ledger.queue(batch_wait_ms_max=5)
    await queue.start()
    try:
        outcomes = await asyncio.gather(
            *(queue.submit(ledger.movement(Adjust(ref(ada), -100))) for _ in range(8))
        )
    finally:
        await queue.stop()
    assert sorted(o.status_code for o in outcomes) == [201] * 5 + [422] * 3
    assert ledger.balance(ada) == 0
    assert queue.batches_committed >= 1
