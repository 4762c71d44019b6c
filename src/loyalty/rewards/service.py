"""Rewards as the customer sees them (seed 002)."""

from __future__ import annotations

import uuid

from loyalty.customers import service as customers_service
from loyalty.customers.service import CustomerRef
from loyalty.db.engine import Database
from loyalty.rewards.schemas import Redeemable


async def get_redeemable(
    database: Database, merchant_id: uuid.UUID, ref: CustomerRef
) -> Redeemable:
    """Balance, the active catalogue with affordability, and the customer's rewards.

    The catalogue and redemptions are not built yet, so both lists are empty.
    """
    customer = await customers_service.get_customer(database, merchant_id, ref)
    return Redeemable(points_balance=customer.points_balance, rewards=[], customer_rewards=[])
