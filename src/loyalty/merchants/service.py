"""Merchants: the tenants. Created by operators through the CLI."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.db.types import utc_now
from loyalty.errors import NotFoundError, ValidationFailedError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.merchants import repository
from loyalty.merchants.schemas import (
    ExpiryImpact,
    ExpiryPreview,
    Merchant,
    PreviewExpiry,
    ProgramSettingsView,
    UpdateProgramSettings,
)
from loyalty.orders.currencies import CURRENCIES
from loyalty.points import format_points
from loyalty.rewards.codes import normalise_prefix
from loyalty.text import check_characters, clean_text

MERCHANT_NAME_CHARS_MAX = 200
# The settings a change is told in the audit trail (not the moments it stamps).
AUDITED_SETTINGS = (
    "points_decimals",
    "default_description",
    "discount_code_prefix",
    "currency",
    "point_value",
    "expiry_policy",
    "expiry_days",
)


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
        expiry_policy=row.expiry_policy,
        expiry_days=row.expiry_days,
        expiry_changed_at=row.expiry_changed_at,
        currency=row.currency,
        updated_at=row.updated_at,
        point_value=row.point_value_micros / MICROS_PER_UNIT,
    )


MICROS_PER_UNIT = 1_000_000
POINT_VALUE_DECIMALS = 6


def parse_point_value(value: float) -> int:
    """A point's money value (0 to 1000, up to 6 decimals) in millionths."""
    exact = Decimal(repr(value))
    if not exact.is_finite() or exact < 0 or exact > 1000:
        raise ValidationFailedError.for_field("point_value", "must be between 0 and 1000")
    micros = exact * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise ValidationFailedError.for_field(
            "point_value", f"may have at most {POINT_VALUE_DECIMALS} decimal places"
        )
    return int(micros)


def check_expiry(policy: str, days: int | None) -> int | None:
    """A policy and its days, consistent: ``none`` has no days, the others need them."""
    if policy == "none":
        if days is not None:
            raise ValidationFailedError.for_field(
                "expiry_days", "must be null when expiry_policy is none"
            )
        return None
    if days is None:
        raise ValidationFailedError.for_field(
            "expiry_days", f"is required when expiry_policy is {policy}"
        )
    return days


async def preview_expiry(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: PreviewExpiry
) -> ExpiryPreview:
    """What saving ``data`` would change (nothing is saved)."""
    days = check_expiry(data.expiry_policy, data.expiry_days)
    current = await repository.get_program_settings_row(connection, merchant_id)
    totals = await repository.expiry_totals(connection, merchant_id)
    now = utc_now()
    nothing = ExpiryImpact(customers=0, points=0)
    undated = ExpiryImpact(
        customers=totals.undated_customers, points=format_points(int(totals.undated_minor))
    )
    newly, no_longer, first_at = nothing, nothing, None
    if data.expiry_policy == "inactivity" and days is not None:
        # Inactivity expires whole balances, counted from the moment it is saved.
        newly = ExpiryImpact(
            customers=totals.customers, points=format_points(int(totals.points_minor))
        )
        first_at = now + timedelta(days=days)
        if current.expiry_policy == "inactivity":
            newly = nothing  # already expiring; only the count restarts
    elif current.expiry_policy == "inactivity":
        no_longer = undated
    if data.expiry_policy == "fixed" and days is not None:
        first_at = now + timedelta(days=days)  # the first credit made after saving
    return ExpiryPreview(
        expiry_policy=data.expiry_policy,
        expiry_days=days,
        current_expiry_policy=current.expiry_policy,
        current_expiry_days=current.expiry_days,
        newly_expiring=newly,
        no_longer_expiring=no_longer,
        dated=ExpiryImpact(
            customers=totals.dated_customers, points=format_points(int(totals.dated_minor))
        ),
        expiring_now=nothing,
        first_expiry_at=first_at,
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
    if not isinstance(data.currency, msgspec.UnsetType):
        if data.currency.upper() not in CURRENCIES:
            raise ValidationFailedError.for_field("currency", "is not an ISO 4217 currency code")
        values["currency"] = data.currency.upper()
    if not isinstance(data.point_value, msgspec.UnsetType):
        values["point_value_micros"] = parse_point_value(data.point_value)
    now = utc_now()
    if not (
        isinstance(data.expiry_policy, msgspec.UnsetType)
        and isinstance(data.expiry_days, msgspec.UnsetType)
    ):
        current = await repository.get_program_settings_row(connection, merchant_id)
        policy = (
            current.expiry_policy
            if isinstance(data.expiry_policy, msgspec.UnsetType)
            else data.expiry_policy
        )
        days = check_expiry(
            policy,
            None
            if isinstance(data.expiry_days, msgspec.UnsetType) and policy == "none"
            else current.expiry_days
            if isinstance(data.expiry_days, msgspec.UnsetType)
            else data.expiry_days,
        )
        if (policy, days) != (current.expiry_policy, current.expiry_days):
            values.update(expiry_policy=policy, expiry_days=days, expiry_changed_at=now)
    before = await get_program_settings(connection, merchant_id) if values else None
    if values:
        await repository.update_program_settings(
            connection, merchant_id, {**values, "updated_at": now}
        )
    settings = await get_program_settings(connection, merchant_id)
    changes = {} if before is None else audit.changed(before, settings, AUDITED_SETTINGS)
    if changes:
        await audit_repository.record_change(
            connection,
            merchant_id=merchant_id,
            subject_type="program_settings",
            subject_id=merchant_id,
            action="updated",
            summary=audit.describe(changes),
            now=now,
        )
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
