"""Earn rules: how a programme grants points for orders and customer actions."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.db.types import utc_now
from loyalty.earning import repository
from loyalty.earning.schemas import CreateEarnRule, EarnRule, EarnRulePage, UpdateEarnRule
from loyalty.errors import ConflictError, NotFoundError, ValidationFailedError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.merchants import repository as merchants_repository
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_field
from loyalty.tiers.repository import lock_programme

# Fields that belong to one kind of rule only.
PURCHASE_FIELDS = ("points_per_currency_unit", "rounding", "min_order_total", "pending_days")
ACTION_FIELDS = ("max_per_customer", "period_days")
REFERRAL_FIELDS = ("referee_points",)
# Holding periods: 0 means no hold, like null, and is stored as null (the ledger
# holds an order's points only for a rule with pending_days).
HOLD_FIELDS = ("pending_days",)
# A rule's configuration, as the audit trail tells a change of it.
AUDITED_FIELDS = (
    "type",
    "points",
    "active",
    "points_per_currency_unit",
    "rounding",
    "min_order_total",
    "pending_days",
    "referee_points",
    "max_per_customer",
    "period_days",
)


class EarnRuleNotFoundError(NotFoundError):
    code = "earn_rule_not_found"


class EarnRuleExistsError(ConflictError):
    code = "earn_rule_exists"


def _money(value: float | None) -> float | None:
    return None if value is None else format_points(int(value))


def to_rule(row: Any) -> EarnRule:
    return EarnRule(
        id=row.id,
        type=row.type,
        points=format_points(row.points_minor),
        active=row.active,
        points_per_currency_unit=_money(row.points_per_currency_unit_minor),
        rounding=row.rounding,
        min_order_total=_money(row.min_order_total_minor),
        pending_days=row.pending_days,
        referee_points=_money(row.referee_points_minor),
        max_per_customer=row.max_per_customer,
        period_days=row.period_days,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_fields(rule_type: str, values: dict[str, Any]) -> None:
    """Refuse fields that do not apply to the rule's type; fill the defaults."""
    allowed: tuple[str, ...] = ()
    if rule_type == "purchase":
        allowed = PURCHASE_FIELDS
    elif rule_type == "referral":
        allowed = ACTION_FIELDS + REFERRAL_FIELDS
    elif rule_type != "birthday":
        allowed = ACTION_FIELDS
    for field in PURCHASE_FIELDS + ACTION_FIELDS + REFERRAL_FIELDS:
        if values.get(field) is not None and field not in allowed:
            raise ValidationFailedError.for_field(field, f"does not apply to a {rule_type} rule")


def _sent(data: CreateEarnRule | UpdateEarnRule) -> dict[str, Any]:
    """The fields sent, a holding period of 0 as null (no hold)."""
    fields = {
        name: getattr(data, name)
        for name in data.__struct_fields__
        if not isinstance(getattr(data, name), msgspec.UnsetType)
    }
    for name in HOLD_FIELDS:
        if fields.get(name) == 0:
            fields[name] = None
    return fields


def _values(data: CreateEarnRule | UpdateEarnRule, points_decimals: int) -> dict[str, Any]:
    """The columns for the fields sent, amounts checked against their precision."""
    fields = _sent(data)
    values: dict[str, Any] = {}
    columns = {
        "points": "points_minor",
        "referee_points": "referee_points_minor",
        "points_per_currency_unit": "points_per_currency_unit_minor",
        "min_order_total": "min_order_total_minor",
    }
    for name, value in fields.items():
        if value is None:
            values[columns.get(name, name)] = None
        elif name == "points":
            values["points_minor"] = parse_field(value, points_decimals, "points")
        elif name == "referee_points":
            values["referee_points_minor"] = parse_field(value, points_decimals, "referee_points")
        elif name == "points_per_currency_unit":
            values["points_per_currency_unit_minor"] = parse_field(
                value, MAXIMUM_DECIMALS, "points_per_currency_unit"
            )
        elif name == "min_order_total":
            values["min_order_total_minor"] = (
                None if value is None else parse_field(value, MAXIMUM_DECIMALS, "min_order_total")
            )
        elif name != "type":
            values[name] = value
    return values


def _complete(rule_type: str, row: dict[str, Any]) -> None:
    """What a rule of this type needs, checked on the rule as it will be stored."""
    if rule_type == "purchase":
        if row.get("points_per_currency_unit_minor") is None:
            raise ValidationFailedError.for_field(
                "points_per_currency_unit", "is required for a purchase rule"
            )
        row.setdefault("rounding", "down")
        if row.get("rounding") is None:
            row["rounding"] = "down"
        return
    if not row.get("points_minor"):
        raise ValidationFailedError.for_field("points", f"must be above 0 for a {rule_type} rule")
    if rule_type == "referral" and row.get("referee_points_minor") is None:
        row["referee_points_minor"] = 0
    if row.get("period_days") is not None and row.get("max_per_customer") is None:
        raise ValidationFailedError.for_field("max_per_customer", "is required with period_days")


async def list_rules(connection: AsyncConnection, merchant_id: uuid.UUID) -> EarnRulePage:
    return EarnRulePage(
        data=[to_rule(row) for row in await repository.list_rules(connection, merchant_id)]
    )


async def _load(
    connection: AsyncConnection, merchant_id: uuid.UUID, rule_id: str, *, lock: bool = False
) -> Any:
    try:
        wanted = uuid.UUID(rule_id)
    except ValueError:
        wanted = None
    row = (
        None
        if wanted is None
        else await repository.get_rule(connection, merchant_id, wanted, lock=lock)
    )
    if row is None:
        raise EarnRuleNotFoundError(f"No earn rule {rule_id!r}.", {"earn_rule_id": rule_id})
    return row


async def get_rule(connection: AsyncConnection, merchant_id: uuid.UUID, rule_id: str) -> EarnRule:
    return to_rule(await _load(connection, merchant_id, rule_id))


async def create_rule(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: CreateEarnRule
) -> EarnRule:
    await lock_programme(connection, merchant_id)  # one rule per type, however many race
    settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    values = _values(data, settings.points_decimals)
    _check_fields(data.type, _sent(data))
    if data.type not in ("purchase", "referral", "birthday") and data.max_per_customer is None:
        values["max_per_customer"] = 1  # actions: once per customer unless the rule says
    _complete(data.type, values)
    existing = await repository.find_by_type(connection, merchant_id, data.type)
    if existing is not None:
        raise EarnRuleExistsError(
            f"The programme already has a {data.type} rule; change it instead.",
            {"type": data.type, "earn_rule_id": str(existing.id)},
        )
    now = utc_now()
    values.update(
        merchant_id=merchant_id, id=new_id(), type=data.type, created_at=now, updated_at=now
    )
    await repository.insert(connection, values)
    rule = to_rule(await _load(connection, merchant_id, str(values["id"])))
    await _record(connection, merchant_id, "earn_rule.created", rule, now)
    await _audit(connection, merchant_id, rule, "created", audit.present(rule, AUDITED_FIELDS))
    return rule


async def update_rule(
    connection: AsyncConnection, merchant_id: uuid.UUID, rule_id: str, data: UpdateEarnRule
) -> EarnRule:
    row = await _load(connection, merchant_id, rule_id, lock=True)
    settings = await merchants_repository.get_program_settings_row(connection, merchant_id)
    values = _values(data, settings.points_decimals)
    _check_fields(row.type, _sent(data))
    merged = {**row._mapping, **values}
    _complete(row.type, merged)
    if not values:
        return to_rule(row)
    now = utc_now()
    await repository.update(connection, merchant_id, row.id, {**values, "updated_at": now})
    rule = to_rule(await _load(connection, merchant_id, rule_id))
    await _record(connection, merchant_id, "earn_rule.updated", rule, now)
    changes = audit.changed(to_rule(row), rule, AUDITED_FIELDS)
    if changes:
        action = "updated"
        if "active" in changes:
            action = "activated" if changes["active"] else "deactivated"
        await _audit(connection, merchant_id, rule, action, changes)
    return rule


async def _record(
    connection: AsyncConnection, merchant_id: uuid.UUID, event_type: str, rule: EarnRule, now: Any
) -> None:
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=event_type,
        subject_id=rule.id,
        payload={"earn_rule": msgspec.to_builtins(rule)},
        now=now,
    )


async def _audit(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    rule: EarnRule,
    action: str,
    values: dict[str, object],
) -> None:
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="earn_rule",
        subject_id=rule.id,
        action=action,
        summary=audit.describe(values),
        now=rule.updated_at,
    )
