"""Migrations that rewrite data, checked on data written under the schema before them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from loyalty.db.engine import async_url
from loyalty.db.migrate import (
    HEAD_REVISION,
    alembic_config,
    current_revision,
    upgrade_to_head_async,
)
from loyalty.db.tables import customers, merchants, order_refunds, orders, pending_credits


def _hold(merchant_id: uuid.UUID, customer_id: uuid.UUID, points: int, status: str) -> Any:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return {
        "merchant_id": merchant_id, "id": uuid.uuid4(), "customer_id": customer_id,
        "points_minor": points, "kind": "earn", "description": "Order", "visible_to_customer": True,
        "apply_to_lifetime": True, "status": status, "available_at": now, "created_at": now,
    }  # fmt: skip


def _order(merchant_id: uuid.UUID, customer_id: uuid.UUID, name: str, hold: Any, taken: int) -> Any:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return {
        "merchant_id": merchant_id, "id": uuid.uuid4(), "order_id": name,
        "customer_id": customer_id, "total_minor": 2000, "currency": "USD",
        "discount_codes": "[]", "fingerprint": name, "status": "partially_refunded",
        "refunded_minor": 500, "points_earned_minor": 2000, "points_removed_minor": taken,
        "pending_id": None if hold is None else hold["id"], "placed_at": now, "created_at": now,
        "updated_at": now,
    }  # fmt: skip


async def test_order_refund_figures_are_rewritten_from_what_happened(
    fresh_database_url: str,
) -> None:
    """0009: holds keep their original points and record what was taken off; orders
    count as removed only what refunds debited."""
    await asyncio.to_thread(command.upgrade, alembic_config(fresh_database_url), "0008")
    engine = create_async_engine(async_url(fresh_database_url))
    merchant_id, customer_id = uuid.uuid4(), uuid.uuid4()
    now = datetime(2026, 11, 1, tzinfo=UTC)
    # A partly refunded hold (20 → 15 left), a hold cancelled by hand, a credit
    # cancelled that belongs to no order, and an order without hold whose refund
    # removed 3 of the 5 points it stood for (2 short).
    shrunk = _hold(merchant_id, customer_id, 1500, "pending")
    by_hand = _hold(merchant_id, customer_id, 2000, "cancelled")
    loose = _hold(merchant_id, customer_id, 700, "cancelled")
    held_order = _order(merchant_id, customer_id, "held", shrunk, 500)
    cancelled_order = _order(merchant_id, customer_id, "by-hand", by_hand, 500)
    plain_order = _order(merchant_id, customer_id, "plain", None, 500)
    async with engine.begin() as connection:
        await connection.execute(insert(merchants).values(id=merchant_id, name="m", created_at=now))
        await connection.execute(
            insert(customers).values(
                merchant_id=merchant_id, id=customer_id, external_id="c", created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
        for hold in (shrunk, by_hand, loose):
            await connection.execute(insert(pending_credits).values(**hold))
        for order in (held_order, cancelled_order, plain_order):
            await connection.execute(insert(orders).values(**order))
        await connection.execute(
            insert(order_refunds).values(
                merchant_id=merchant_id, id=uuid.uuid4(), order_row_id=plain_order["id"],
                amount_minor=500, points_removed_minor=300, points_cancelled_minor=0,
                shortfall_minor=200, created_at=now,
            )
        )  # fmt: skip
    await engine.dispose()
    await upgrade_to_head_async(fresh_database_url)
    engine = create_async_engine(async_url(fresh_database_url))
    async with engine.connect() as connection:
        holds = {
            row.id: (row.points_minor, row.points_cancelled_minor)
            for row in await connection.execute(select(pending_credits))
        }
        figures = {
            row.order_id: (row.points_removed_minor, row.refund_points_minor)
            for row in await connection.execute(select(orders))
        }
    await engine.dispose()
    assert holds[shrunk["id"]] == (2000, 500)
    assert holds[by_hand["id"]] == (2000, 2000)
    assert holds[loose["id"]] == (700, 700)
    assert figures == {"held": (0, 500), "by-hand": (0, 500), "plain": (300, 500)}


async def test_a_migrated_database_is_recognised_without_alembic(
    fresh_database_url: str,
) -> None:
    """Commands skip Alembic on a database already at the head (one driver-level read)."""
    assert await asyncio.to_thread(current_revision, fresh_database_url) is None
    await upgrade_to_head_async(fresh_database_url)
    assert await asyncio.to_thread(current_revision, fresh_database_url) == HEAD_REVISION
