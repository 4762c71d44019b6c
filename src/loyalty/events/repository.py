"""The events outbox: written in the same transaction as the change it reports,
stamped with its merchant's ``sequence`` once that transaction has committed.

Why stamp after the commit: writers on several processes (and the ledger's
overlapping batches) commit in an order nobody knows when the rows are
inserted. An event inserted first may commit last; a feed that numbered events
at insert time and served "everything after number N" would skip it. Instead
an event is inserted without a sequence, and ``stamp`` numbers the committed,
unnumbered events of a merchant under a lock on the merchant's counter
(``event_sequences``): a stamp only ever sees committed rows, stamps are
serialised per merchant, and each stamp commits its numbers at once, so a
reader that has seen sequence N will never later find a new event numbered N
or below. On SQLite the write lock serialises stamps the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.actors import current_actor
from loyalty.db.bulk import insert_many
from loyalty.db.tables import event_sequences, events, merchants
from loyalty.db.wakeup import EVENTS_WRITTEN
from loyalty.ids import new_id, uuid7_floor

_encoder = msgspec.json.Encoder()
# Events numbered per stamp at most (the rest in the next).
STAMP_BATCH_MAX = 2000


# What an event object is made of (``loyalty.events.service.event_view``).
_EVENT_COLUMNS = (
    events.c.id,
    events.c.type,
    events.c.created_at,
    events.c.sequence,
    events.c.customer_ref,
    events.c.payload,
    events.c.actor,
)


@dataclass(frozen=True, slots=True)
class Stamped:
    """An event just numbered: what fan-out to webhook endpoints needs."""

    id: uuid.UUID
    type: str
    subject_id: uuid.UUID | None
    sequence: int
    created_at: datetime
    customer_ref: str | None
    payload: str
    actor: str


async def record(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    event_type: str,
    subject_id: uuid.UUID | None,
    payload: dict[str, Any],
    now: datetime,
    customer_ref: str | None = None,
) -> uuid.UUID:
    """Write an event in the caller's transaction (``payload`` is its ``data``)."""
    event_id = new_id()
    await connection.execute(
        events.insert().values(
            merchant_id=merchant_id,
            id=event_id,
            type=event_type,
            subject_id=subject_id,
            payload=_encoder.encode(payload).decode(),
            customer_ref=customer_ref,
            actor=current_actor(),
            created_at=now,
        )
    )
    connection.info[EVENTS_WRITTEN] = True
    return event_id


async def record_many(
    connection: AsyncConnection,
    *,
    merchant_id: uuid.UUID,
    records: Sequence[tuple[str, uuid.UUID | None, dict[str, Any], str | None]],
    now: datetime,
) -> None:
    """Write many events at once in the caller's transaction: (type, subject id,
    payload, the customer's platform id) each, in this order."""
    if not records:
        return
    actor = current_actor()
    await insert_many(
        connection,
        "events",
        [
            {
                "merchant_id": merchant_id,
                "id": new_id(),
                "type": event_type,
                "subject_id": subject_id,
                "payload": _encoder.encode(payload).decode(),
                "customer_ref": customer_ref,
                "actor": actor,
                "created_at": now,
            }
            for event_type, subject_id, payload, customer_ref in records
        ],
    )
    connection.info[EVENTS_WRITTEN] = True


async def next_merchant_with_unstamped(
    connection: AsyncConnection, after: uuid.UUID | None
) -> uuid.UUID | None:
    """The first merchant after ``after`` with committed events that have no
    sequence yet (one step of a loose scan of the partial index)."""
    statement = select(events.c.merchant_id).where(events.c.sequence.is_(None))
    if after is not None:
        statement = statement.where(events.c.merchant_id > after)
    row = (await connection.execute(statement.order_by(events.c.merchant_id).limit(1))).first()
    return None if row is None else row.merchant_id


async def has_unstamped(connection: AsyncConnection, merchant_id: uuid.UUID) -> bool:
    row = await connection.execute(
        select(events.c.id)
        .where(events.c.merchant_id == merchant_id, events.c.sequence.is_(None))
        .limit(1)
    )
    return row.first() is not None


async def _lock_counter(connection: AsyncConnection, merchant_id: uuid.UUID) -> int:
    """The merchant's last sequence, its counter row locked until the commit."""
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(event_sequences)
        .values(merchant_id=merchant_id, last_sequence=0)
        .on_conflict_do_update(
            index_elements=["merchant_id"],
            set_={"last_sequence": event_sequences.c.last_sequence},
        )
        .returning(event_sequences.c.last_sequence)
    )
    return int((await connection.execute(statement)).scalar_one())


async def stamp(connection: AsyncConnection, merchant_id: uuid.UUID) -> list[Stamped]:
    """Number the merchant's committed events that have no sequence yet, oldest
    first, continuing its counter. Run in its own transaction; the counter's lock
    (taken first, in its own statement, so the next statement's snapshot sees
    every stamp committed before it) serialises concurrent stamps."""
    last = await _lock_counter(connection, merchant_id)
    # One statement: number the oldest unnumbered events after ``last``.
    numbered = (
        select(
            events.c.merchant_id,
            events.c.id,
            (last + func.row_number().over(order_by=events.c.id)).label("number"),
        )
        .where(events.c.merchant_id == merchant_id, events.c.sequence.is_(None))
        .order_by(events.c.id)
        .limit(STAMP_BATCH_MAX)
        .subquery("numbered")
    )
    rows = (
        await connection.execute(
            update(events)
            .where(
                events.c.merchant_id == numbered.c.merchant_id,
                events.c.id == numbered.c.id,
            )
            .values(sequence=numbered.c.number)
            .returning(
                events.c.id,
                events.c.type,
                events.c.subject_id,
                events.c.sequence,
                events.c.created_at,
                events.c.customer_ref,
                events.c.payload,
                events.c.actor,
            )
        )
    ).all()
    if not rows:
        return []
    stamped = sorted(
        (
            Stamped(
                row.id,
                row.type,
                row.subject_id,
                row.sequence,
                row.created_at,
                row.customer_ref,
                row.payload,
                row.actor,
            )
            for row in rows
        ),
        key=lambda event: event.sequence,
    )
    await connection.execute(
        update(event_sequences)
        .where(event_sequences.c.merchant_id == merchant_id)
        .values(last_sequence=stamped[-1].sequence)
    )
    return stamped


async def feed_page(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    after: int,
    limit: int,
    types: list[str] | None,
    customer_ref: str | None,
) -> list[Any]:
    """Stamped events after sequence ``after``, in sequence order (``limit`` rows)."""
    conditions = [
        events.c.merchant_id == merchant_id,
        # Numbered events only (the feed's partial indexes hold nothing else).
        events.c.sequence.is_not(None),
        events.c.sequence > after,
    ]
    if types:
        conditions.append(events.c.type.in_(types))
    if customer_ref is not None:
        conditions.append(events.c.customer_ref == customer_ref)
    rows = await connection.execute(
        select(*_EVENT_COLUMNS).where(and_(*conditions)).order_by(events.c.sequence).limit(limit)
    )
    return list(rows)


async def last_sequence(connection: AsyncConnection, merchant_id: uuid.UUID) -> int:
    """The highest sequence stamped for the merchant (0 if none)."""
    value = await connection.scalar(
        select(event_sequences.c.last_sequence).where(event_sequences.c.merchant_id == merchant_id)
    )
    return int(value or 0)


async def merchant_ids(connection: AsyncConnection) -> list[uuid.UUID]:
    return list((await connection.execute(select(merchants.c.id))).scalars())


async def purge_before(
    connection: AsyncConnection, merchant_id: uuid.UUID, cutoff: datetime, limit: int
) -> int:
    """Delete up to ``limit`` stamped events created before ``cutoff`` (oldest first;
    UUIDv7 ids grow with time, so the primary key finds them)."""
    bound = uuid7_floor(int(cutoff.timestamp() * 1000))
    doomed = (
        select(events.c.id)
        .where(
            events.c.merchant_id == merchant_id,
            events.c.id < bound,
            events.c.sequence.is_not(None),
        )
        .order_by(events.c.id)
        .limit(limit)
        .scalar_subquery()
    )
    result = await connection.execute(
        delete(events).where(events.c.merchant_id == merchant_id, events.c.id.in_(doomed))
    )
    return int(result.rowcount or 0)
