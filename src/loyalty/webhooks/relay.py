"""From committed events to deliveries: number a merchant's new events (the
feed's ``sequence``) and, in the same transaction, schedule a first attempt
to each active endpoint whose ``event_types`` match. Run by the deliverers
when woken, and by the feed before it reads, so that the feed works without
a worker and every event that has a sequence has its deliveries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.types import utc_now
from loyalty.events import repository as events
from loyalty.events.repository import Stamped
from loyalty.events.types import WEBHOOK_TEST
from loyalty.ids import new_id
from loyalty.webhooks import repository


@dataclass(frozen=True, slots=True)
class HandOff:
    """First attempts leased to the deliverer that numbered their events, so it
    sends them at once without claiming them (at most ``rooms`` per endpoint,
    ``per_endpoint`` for endpoints not listed, ``free`` in all)."""

    lease_until: datetime
    free: int
    per_endpoint: int
    rooms: dict[uuid.UUID, int]


@dataclass(frozen=True, slots=True)
class Leased:
    """A first attempt handed off: the columns of a claimed attempt."""

    merchant_id: uuid.UUID
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    attempt: int
    trigger: str
    type: str
    created_at: datetime
    sequence: int
    customer_ref: str | None
    payload: str
    actor: str
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None


async def stamp_and_fan_out(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    now: datetime | None = None,
    hand_off: HandOff | None = None,
) -> tuple[int, list[Leased]]:
    """Returns how many events were numbered, and the attempts handed off."""
    stamped = await events.stamp(connection, merchant_id)
    if not stamped:
        return 0, []
    endpoints = await repository.active_endpoints(connection, merchant_id)
    leased: list[Leased] = []
    if endpoints:
        moment = now or utc_now()
        wanted = [
            (row, None if row.event_types is None else set(msgspec.json.decode(row.event_types)))
            for row in endpoints
        ]
        taken: dict[uuid.UUID, int] = {}
        attempts = []
        for event in stamped:
            for endpoint, types in wanted:
                if not (
                    # A test ping goes to the endpoint it names, whatever its types.
                    event.subject_id == endpoint.id
                    if event.type == WEBHOOK_TEST
                    else types is None or event.type in types
                ):
                    continue
                attempt_id = new_id()
                lease_until = None
                if hand_off is not None and len(leased) < hand_off.free:
                    room = hand_off.rooms.get(endpoint.id, hand_off.per_endpoint)
                    if taken.get(endpoint.id, 0) < room:
                        taken[endpoint.id] = taken.get(endpoint.id, 0) + 1
                        lease_until = hand_off.lease_until
                        leased.append(_leased(merchant_id, attempt_id, endpoint, event))
                attempts.append(
                    {
                        "merchant_id": merchant_id,
                        "id": attempt_id,
                        "endpoint_id": endpoint.id,
                        "event_id": event.id,
                        "event_type": event.type,
                        "attempt": 1,
                        "trigger": "scheduled",
                        "status": "pending",
                        "scheduled_at": moment,
                        "locked_until": lease_until,
                    }
                )
        await repository.insert_attempts(connection, attempts)
    return len(stamped), leased


def _leased(merchant_id: uuid.UUID, attempt_id: uuid.UUID, endpoint: Any, event: Stamped) -> Leased:
    return Leased(
        merchant_id=merchant_id,
        id=attempt_id,
        endpoint_id=endpoint.id,
        event_id=event.id,
        attempt=1,
        trigger="scheduled",
        type=event.type,
        created_at=event.created_at,
        sequence=event.sequence,
        customer_ref=event.customer_ref,
        payload=event.payload,
        actor=event.actor,
        url=endpoint.url,
        secret=endpoint.secret,
        previous_secret=endpoint.previous_secret,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )
