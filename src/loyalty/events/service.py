"""The events feed: every event of a merchant exactly once, in ``sequence`` order."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from loyalty.cursors import cursor_value, encode_cursor
from loyalty.db.engine import Database
from loyalty.errors import ValidationFailedError
from loyalty.events import repository
from loyalty.events.types import KNOWN
from loyalty.webhooks.relay import stamp_and_fan_out
from loyalty.webhooks.schemas import Event, EventPage

FEED_LIMIT_MAX = 100
_CURSOR_KIND = "e"


def event_view(row: Any) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        timestamp=row.created_at,
        sequence=row.sequence,
        customer_id=row.customer_ref,
        data=msgspec.json.decode(row.payload),
        actor=row.actor,
    )


def parse_types(values: list[str] | None) -> list[str] | None:
    """``type`` repeated or comma-separated; unknown types are 422 naming ``type``."""
    if not values:
        return None
    types = [part.strip() for value in values for part in value.split(",") if part.strip()]
    unknown = sorted(set(types) - KNOWN)
    if unknown:
        raise ValidationFailedError.for_field(
            "type", f"unknown event type(s): {', '.join(unknown)}", location="query"
        )
    return types or None


def _position(value: str) -> int:
    position = int(value)
    if position < 0:
        raise ValueError(value)
    return position


async def read_feed(
    database: Database,
    merchant_id: uuid.UUID,
    *,
    cursor: str | None,
    limit: int,
    types: list[str] | None,
    customer_ref: str | None,
) -> EventPage:
    """A page of the feed after ``cursor`` (from the oldest retained event without one).

    Events committed but not numbered yet are numbered first (a worker usually
    has already), so the feed needs no worker; only numbered events are served,
    and numbers are given in commit order of the numbering, never below one
    already served."""
    if not 1 <= limit <= FEED_LIMIT_MAX:
        raise ValidationFailedError.for_field(
            "limit", f"must be between 1 and {FEED_LIMIT_MAX}", location="query"
        )
    after = _position(cursor_value(cursor, _CURSOR_KIND, _position)) if cursor else 0
    async with database.read() as connection:
        unstamped = await repository.has_unstamped(connection, merchant_id)
    if unstamped:
        # Attempts scheduled here are claimed by the deliverers.
        await database.transaction(lambda connection: stamp_and_fan_out(connection, merchant_id))
    async with database.read() as connection:
        # The horizon first: everything up to it is numbered and visible below.
        horizon = await repository.last_sequence(connection, merchant_id)
        rows = await repository.feed_page(
            connection,
            merchant_id,
            after=after,
            limit=limit + 1,
            types=types,
            customer_ref=customer_ref,
        )
    rows = [row for row in rows if row.sequence <= horizon]
    has_more = len(rows) > limit
    page = [event_view(row) for row in rows[:limit]]
    if has_more:
        position = page[-1].sequence
    else:
        # Nothing more up to the horizon matches: a filtered reader skips past it.
        position = max(after, horizon, page[-1].sequence if page else 0)
    return EventPage(
        data=page, next_cursor=encode_cursor(position, kind=_CURSOR_KIND), has_more=has_more
    )
