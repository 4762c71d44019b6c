"""Merchants: the tenants. Created by operators through the CLI."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.types import utc_now
from loyalty.errors import NotFoundError, ValidationFailedError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.merchants import repository
from loyalty.merchants.schemas import Merchant, ProgramSettingsView, UpdateProgramSettings
from loyalty.rewards.codes import normalise_prefix
from loyalty.text import check_characters, clean_text

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


def _to_view(row: Any) -> ProgramSettingsView:
    return ProgramSettingsView(
        points_decimals=row.points_decimals,
        default_description=row.default_description,
        discount_code_prefix=row.discount_code_prefix,
        updated_at=row.updated_at,
    )


async def get_program_settings(
    connection: AsyncConnection, merchant_id: uuid.UUID
) -> ProgramSettingsView:
    return _to_view(await repository.get_program_settings_row(connection, merchant_id))


async def update_program_settings(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: UpdateProgramSettings
) -> ProgramSettingsView:
    """Change the programme's settings; new values apply to what happens next."""
    values: dict[str, Any] = {}
    if not isinstance(data.points_decimals, msgspec.UnsetType):
        values["points_decimals"] = data.points_decimals
    if not isinstance(data.default_description, msgspec.UnsetType):
        check_characters(data.default_description, "default_description")
        description = clean_text(data.default_description)
        if not description:
            raise ValidationFailedError.for_field("default_description", "must not be blank")
        values["default_description"] = description
    if not isinstance(data.discount_code_prefix, msgspec.UnsetType):
        values["discount_code_prefix"] = normalise_prefix(data.discount_code_prefix)
    now = utc_now()
    if values:
        await repository.update_program_settings(
            connection, merchant_id, {**values, "updated_at": now}
        )
    settings = await get_program_settings(connection, merchant_id)
    if values:
        await events.record(
            connection,
            merchant_id=merchant_id,
            event_type="settings.updated",
            subject_id=merchant_id,
            payload={"settings": msgspec.to_builtins(settings), "changed": sorted(values)},
            now=now,
        )
    return settings
