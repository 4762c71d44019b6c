"""VIP tiers: the programme's ladder, and where a customer stands on it.

Tiers are ordered by threshold on the programme's basis (lifetime points
earned, or money spent; all time or a rolling window). A customer's tier is
recomputed by the ledger writer in the same transaction as every change of
its basis, and by the scheduler when time alone changes it (a retention
ending, points leaving the window); see ``loyalty.ledger.engine.lifecycle``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.customers.schemas import TierRef
from loyalty.db.types import utc_now
from loyalty.errors import ConflictError, NotFoundError, ValidationFailedError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.merchants import repository as merchants_repository
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_field
from loyalty.text import check_characters, strip_html
from loyalty.tiers import repository
from loyalty.tiers.schemas import CreateTier, Tier, TierPage, UpdateTier

DEFAULT_BASIS = "lifetime_points"
# A tier's configuration (and the programme's basis), as the audit trail tells it.
AUDITED_FIELDS = ("name", "threshold", "basis", "window_days", "multiplier", "retention_days")


class TierNotFoundError(NotFoundError):
    code = "tier_not_found"


class TierConflictError(ConflictError):
    code = "tier_conflict"


def to_tier(row: Any, basis: str, window_days: int | None) -> Tier:
    return Tier(
        id=row.id,
        name=row.name,
        threshold=format_points(row.threshold_minor),
        basis=basis,  # type: ignore[arg-type]
        window_days=window_days,
        multiplier=format_points(row.multiplier_hundredths),
        retention_days=row.retention_days,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _name(value: str) -> str:
    check_characters(value, "name")
    name = strip_html(value)
    if not name:
        raise ValidationFailedError.for_field("name", "must not be blank")
    return name


def _threshold(value: float, basis: str, points_decimals: int) -> int:
    decimals = MAXIMUM_DECIMALS if basis == "amount_spent" else points_decimals
    return parse_field(value, decimals, "threshold")


def _multiplier(value: float) -> int:
    return parse_field(value, MAXIMUM_DECIMALS, "multiplier")


def _check_unique(
    rows: list[Any], tier_id: uuid.UUID | None, name: str | None, threshold_minor: int | None
) -> None:
    for row in rows:
        if row.id == tier_id:
            continue
        if name is not None and row.name.lower() == name.lower():
            raise TierConflictError(
                f"Another tier is already named {name!r}.",
                {"field": "name", "tier_id": str(row.id)},
            )
        if threshold_minor is not None and row.threshold_minor == threshold_minor:
            raise TierConflictError(
                "Another tier already has this threshold.",
                {"field": "threshold", "tier_id": str(row.id)},
            )


async def list_tiers(connection: AsyncConnection, merchant_id: uuid.UUID) -> TierPage:
    settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    basis = settings.tier_basis or DEFAULT_BASIS
    rows = await repository.list_tiers(connection, merchant_id)
    return TierPage(data=[to_tier(row, basis, settings.tier_window_days) for row in rows])


def _find(rows: list[Any], tier_id: str) -> Any:
    try:
        wanted = uuid.UUID(tier_id)
    except ValueError:
        wanted = None
    for row in rows:
        if row.id == wanted:
            return row
    raise TierNotFoundError(f"No tier {tier_id!r}.", {"tier_id": tier_id})


async def get_tier(connection: AsyncConnection, merchant_id: uuid.UUID, tier_id: str) -> Tier:
    page = await list_tiers(connection, merchant_id)
    for tier in page.data:
        if str(tier.id) == tier_id.lower():
            return tier
    raise TierNotFoundError(f"No tier {tier_id!r}.", {"tier_id": tier_id})


async def create_tier(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: CreateTier
) -> Tier:
    programme = await repository.lock_programme(connection, merchant_id)
    settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    rows = await repository.list_tiers(connection, merchant_id)
    basis, window_days = _programme_basis(programme, data.basis, data.window_days)
    name = _name(data.name)
    threshold_minor = _threshold(data.threshold, basis, settings.points_decimals)
    _check_unique(rows, None, name, threshold_minor)
    now = utc_now()
    values = {
        "merchant_id": merchant_id,
        "id": new_id(),
        "name": name,
        "threshold_minor": threshold_minor,
        "multiplier_hundredths": _multiplier(data.multiplier),
        "retention_days": data.retention_days,
        "created_at": now,
        "updated_at": now,
    }
    await repository.insert(connection, values)
    changed = await _set_programme(connection, merchant_id, programme, basis, window_days, now)
    tier = await get_tier(connection, merchant_id, str(values["id"]))
    await _recorded(connection, merchant_id, "tier.created", tier, changed, now)
    await _audit(connection, merchant_id, tier, "created", audit.present(tier, AUDITED_FIELDS), now)
    return tier


async def update_tier(
    connection: AsyncConnection, merchant_id: uuid.UUID, tier_id: str, data: UpdateTier
) -> Tier:
    programme = await repository.lock_programme(connection, merchant_id)
    settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    rows = await repository.list_tiers(connection, merchant_id)
    row = _find(rows, tier_id)
    basis, window_days = _programme_basis(programme, data.basis, data.window_days)
    values: dict[str, Any] = {}
    if not isinstance(data.name, msgspec.UnsetType):
        values["name"] = _name(data.name)
    if not isinstance(data.threshold, msgspec.UnsetType):
        values["threshold_minor"] = _threshold(data.threshold, basis, settings.points_decimals)
    if not isinstance(data.multiplier, msgspec.UnsetType):
        values["multiplier_hundredths"] = _multiplier(data.multiplier)
    if not isinstance(data.retention_days, msgspec.UnsetType):
        values["retention_days"] = data.retention_days
    _check_unique(rows, row.id, values.get("name"), values.get("threshold_minor"))
    now = utc_now()
    if values:
        await repository.update(connection, merchant_id, row.id, {**values, "updated_at": now})
    changed = await _set_programme(connection, merchant_id, programme, basis, window_days, now)
    tier = await get_tier(connection, merchant_id, str(row.id))
    if values or changed:
        await _recorded(connection, merchant_id, "tier.updated", tier, changed, now)
    before = to_tier(row, programme.tier_basis or DEFAULT_BASIS, programme.tier_window_days)
    changes = audit.changed(before, tier, AUDITED_FIELDS)
    if changes:
        await _audit(connection, merchant_id, tier, "updated", changes, now)
    return tier


def _programme_basis(
    programme: Any, basis: str | msgspec.UnsetType, window_days: int | msgspec.UnsetType | None
) -> tuple[str, int | None]:
    """The programme's basis and window after a request (fields left out keep theirs)."""
    return (
        programme.tier_basis or DEFAULT_BASIS if isinstance(basis, msgspec.UnsetType) else basis,
        programme.tier_window_days if isinstance(window_days, msgspec.UnsetType) else window_days,
    )


async def _set_programme(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    programme: Any,
    basis: str,
    window_days: int | None,
    now: datetime,
) -> bool:
    """Store the programme's basis and window; True when they changed."""
    if programme.tier_basis == basis and programme.tier_window_days == window_days:
        return False
    await repository.set_programme_basis(connection, merchant_id, basis, window_days, now)
    return True


async def _recorded(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    event_type: str,
    tier: Tier,
    basis_changed: bool,
    now: datetime,
) -> None:
    # Every customer's tier is looked at again by the scheduler, in bounded batches.
    await repository.schedule_recheck(connection, merchant_id, now)
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=event_type,
        subject_id=tier.id,
        payload={"tier": msgspec.to_builtins(tier), "basis_changed": basis_changed},
        now=now,
    )


async def _audit(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    tier: Tier,
    action: str,
    values: dict[str, object],
    now: datetime,
) -> None:
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="tier",
        subject_id=tier.id,
        action=action,
        summary=audit.describe(values),
        now=now,
    )


class Progress(msgspec.Struct, frozen=True):
    basis_value: float
    next_tier: TierRef | None
    amount_to_next_tier: float | None


async def progress(connection: AsyncConnection, merchant_id: uuid.UUID, row: Any) -> Progress:
    """Where a customer (a row with balances and the programme's tier settings) stands."""
    if row.tier_window_days is not None:
        since = utc_now() - timedelta(days=row.tier_window_days)
        total = (
            repository.spend_window_total
            if row.tier_basis == "amount_spent"
            else repository.window_total
        )
        value = await total(connection, merchant_id, row.id, since)
    elif row.tier_basis == "amount_spent":
        value = row.total_spent_minor
    else:
        value = row.lifetime_points_minor
    rows = await repository.list_tiers(connection, merchant_id)
    current = next((tier for tier in rows if tier.id == row.tier_id), None)
    floor = -1 if current is None else current.threshold_minor
    for tier in rows:
        if tier.threshold_minor > floor and tier.threshold_minor > value:
            return Progress(
                basis_value=format_points(value),
                next_tier=TierRef(id=tier.id, name=tier.name),
                amount_to_next_tier=format_points(tier.threshold_minor - value),
            )
    return Progress(basis_value=format_points(value), next_tier=None, amount_to_next_tier=None)
