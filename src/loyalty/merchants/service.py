"""Merchants: the tenants. Created by operators through the CLI."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.types import utc_now
from loyalty.errors import NotFoundError, ValidationFailedError
from loyalty.ids import new_id
from loyalty.merchants import repository
from loyalty.merchants.schemas import Merchant

MERCHANT_NAME_CHARS_MAX = 200


class MerchantNotFoundError(NotFoundError):
    code = "merchant_not_found"


async def create_merchant(connection: AsyncConnection, name: str) -> Merchant:
    name = name.strip()
    if not name or len(name) > MERCHANT_NAME_CHARS_MAX:
        raise ValidationFailedError.for_field(
            "name", f"must be 1 to {MERCHANT_NAME_CHARS_MAX} characters"
        )
    merchant = Merchant(id=new_id(), name=name, created_at=utc_now())
    await repository.insert_merchant(connection, merchant)
    return merchant


async def get_merchant(connection: AsyncConnection, merchant_id: uuid.UUID) -> Merchant:
    merchant = await repository.get_merchant(connection, merchant_id)
    if merchant is None:
        raise MerchantNotFoundError(f"No merchant {merchant_id}.")
    return merchant
