"""One batch, start to end, inside one store transaction.

1. claim the batch's idempotency keys (replays of keys used before need nothing else);
2. lock every customer the operations name, all at once, in one fixed order;
3. read, in rounds, the rows the operations ask for (``Operation.prefetch``);
4. decide every movement in arrival order (``planner``) through one ``BatchTx``;
5. write the changes, table by table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from loyalty.errors import invariant
from loyalty.ledger.engine.planner import key_leaders, plan_batch
from loyalty.ledger.engine.protocol import Movement, Outcome
from loyalty.ledger.engine.store import BatchSession
from loyalty.ledger.engine.tables import Prefetch, Snapshot
from loyalty.ledger.engine.tx import BatchTx

# Rounds of reading before deciding (a refund reads its order, then the order's hold).
PREFETCH_ROUNDS_MAX = 4


async def run_batch(
    session: BatchSession,
    movements: Sequence[Movement],
    *,
    now: datetime,
    new_id: Callable[[], uuid.UUID],
    draw_code: Callable[[str], str],
    on_locked: Callable[[], None] = lambda: None,
) -> list[Outcome]:
    """Plan and apply one batch in the session's transaction; each movement's outcome."""
    claimed, stored = await session.claim_keys(key_leaders(movements), now)
    # Replays of keys already used need no customer.
    to_apply = [m for m in movements if m.key_ref is None or m.key_ref in claimed]
    by_id: set[tuple[uuid.UUID, str]] = set()
    by_email: set[tuple[uuid.UUID, str]] = set()
    by_uuid: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for movement in to_apply:
        for ref in movement.operation.locks():
            if ref.customer_id is not None:
                by_id.add((movement.merchant_id, ref.customer_id))
            elif ref.customer_email is not None:
                by_email.add((movement.merchant_id, ref.customer_email))
            elif ref.internal_id is not None:
                by_uuid.add((movement.merchant_id, ref.internal_id))
    customers = (
        await session.lock_customers(by_id, by_email, by_uuid)
        if by_id or by_email or by_uuid
        else []
    )
    snapshot = Snapshot(customers, now)
    await _prefetch(session, snapshot, to_apply, now)
    on_locked()
    tx = BatchTx(snapshot, now=now, new_id=new_id, draw_code=draw_code)
    outcomes = plan_batch(movements, claimed=claimed, stored=stored, tx=tx)
    await session.write(tx.changes, now)
    return outcomes


def engine_wants(snapshot: Snapshot) -> Prefetch:
    """What every posting may need: lots, tiers and tier windows of the locked customers.

    A customer without expiring points has no lot: known without a query."""
    want = Prefetch()
    for customer in snapshot.customers:
        if customer.expiring_lots_minor:
            want.lots.add(customer.key)
        else:
            snapshot.lots.found(customer.key, [])
        if customer.tier_basis is not None or customer.tier_id is not None:
            want.tiers.add(customer.merchant_id)
        if customer.tier_basis is not None and customer.tier_window_days is not None:
            want.windows.add(
                (
                    customer.merchant_id,
                    customer.customer_id,
                    customer.tier_basis,
                    customer.tier_window_days,
                )
            )
    return want


def _known_empty(snapshot: Snapshot, request: Prefetch) -> None:
    """Rows the locked balances already say are absent are not read: the pending credits
    of a customer with none pending."""
    for key in list(request.pending_of):
        customer = snapshot.by_id.get(key)
        if customer is not None and customer.pending_points_minor == 0:
            request.pending_of.discard(key)
            snapshot.pending_of.found(key, True)


async def _prefetch(
    session: BatchSession, snapshot: Snapshot, movements: Sequence[Movement], now: datetime
) -> None:
    base = engine_wants(snapshot)
    for _ in range(PREFETCH_ROUNDS_MAX):
        want = Prefetch(lots=set(base.lots), tiers=set(base.tiers), windows=set(base.windows))
        for movement in movements:
            movement.operation.prefetch(movement.merchant_id, snapshot, want)
        request = want.new_for(snapshot)
        _known_empty(snapshot, request)
        if not request:
            return
        await session.load(request, snapshot, now)
        snapshot.mark_read(request)
    invariant(False, f"operations stop asking for rows within {PREFETCH_ROUNDS_MAX} rounds")
