"""Rewards: the merchant's catalogue, and rewards as the customer sees them (seed 002)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.audit import repository as audit_repository
from loyalty.audit import service as audit
from loyalty.cursors import encode_cursor
from loyalty.customers import service as customers_service
from loyalty.customers.refs import CustomerRef, customer_not_found
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.errors import ValidationFailedError
from loyalty.events import repository as events
from loyalty.ids import new_id
from loyalty.ledger import service as ledger_service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.operations.redemptions import Redeem, Revert
from loyalty.ledger.service import check_limit, decode_cursor
from loyalty.ledger.writer import LedgerWriter
from loyalty.merchants import repository as merchants_repository
from loyalty.points import MAXIMUM_DECIMALS, format_points, parse_field
from loyalty.rewards import repository
from loyalty.rewards.customer_rewards import ACTIVE, effective_status, to_detail, to_summary
from loyalty.rewards.errors import (
    CustomerRewardNotFoundError,
    InvalidRewardStateError,
    RewardNotFoundError,
)
from loyalty.rewards.rules import validate_rule
from loyalty.rewards.schemas import (
    ChangeCustomerRewardStatus,
    CreateReward,
    CustomerRewardDetail,
    Redeemable,
    RedeemableReward,
    RedeemReward,
    Reward,
    RewardPage,
    UpdateReward,
    UseReward,
)
from loyalty.text import check_characters, clean_text

_encoder = msgspec.json.Encoder()

# The redeemable endpoint shows the customer's newest rewards, up to this many.
CUSTOMER_REWARDS_SHOWN_MAX = 100
EXPIRY_BATCH_SIZE = 500
# A reward's configuration, as the audit trail tells a change of it.
AUDITED_FIELDS = (
    "name",
    "description",
    "reward_type",
    "points_cost",
    "reward_rule",
    "active",
    "code_validity_days",
    "minimum_order_amount",
    "per_customer_limit",
)


def to_reward(row: Any) -> Reward:
    minimum = row.minimum_order_amount_minor
    return Reward(
        id=row.id,
        number=row.number,
        name=row.name,
        description=row.description,
        reward_type=row.reward_type,
        points_cost=format_points(row.points_cost_minor),
        reward_rule=msgspec.json.decode(row.reward_rule),
        active=row.active,
        code_validity_days=row.code_validity_days,
        minimum_order_amount=None if minimum is None else format_points(minimum),
        per_customer_limit=row.per_customer_limit,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def _text(value: str | None, field: str) -> str | None:
    check_characters(value, field)
    return clean_text(value)


async def _record(
    connection: AsyncConnection, merchant_id: uuid.UUID, event_type: str, reward: Reward
) -> None:
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=event_type,
        subject_id=reward.id,
        payload={"reward": msgspec.to_builtins(reward)},
        now=reward.updated_at,
    )


async def _audit(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    reward: Reward,
    action: str,
    values: dict[str, object],
) -> None:
    await audit_repository.record_change(
        connection,
        merchant_id=merchant_id,
        subject_type="reward",
        subject_id=reward.id,
        action=action,
        summary=audit.describe(values),
        now=reward.updated_at,
    )


def _activation(changes: dict[str, object], otherwise: str) -> str:
    """``deactivated`` or ``activated`` when ``active`` changed, else ``otherwise``."""
    if "active" not in changes:
        return otherwise
    return "activated" if changes["active"] else "deactivated"


def _reward_id(reward_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(reward_id)
    except ValueError:
        raise RewardNotFoundError(f"No reward {reward_id!r}.") from None


async def _load(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: str, *, lock: bool = False
) -> Any:
    row = await repository.get(connection, merchant_id, _reward_id(reward_id), lock=lock)
    if row is None:
        raise RewardNotFoundError(f"No reward {reward_id!r}.", {"reward_id": reward_id})
    return row


async def create_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, data: CreateReward
) -> Reward:
    settings = await merchants_repository.get_program_settings(connection, merchant_id)
    points_cost_minor = parse_field(data.points_cost, settings.points_decimals, "points_cost")
    name = _text(data.name, "name")
    if name is None:
        raise ValidationFailedError.for_field("name", "must not be blank")
    now = utc_now()
    values: dict[str, Any] = {
        "merchant_id": merchant_id,
        "id": new_id(),
        "number": await repository.next_number(connection, merchant_id),
        "name": name,
        "description": _text(data.description, "description"),
        "reward_type": data.reward_type,
        "points_cost_minor": points_cost_minor,
        "reward_rule": _encoder.encode(
            validate_rule(data.reward_type, data.reward_rule, format_points(points_cost_minor))
        ).decode(),
        "active": data.active,
        "code_validity_days": data.code_validity_days,
        "minimum_order_amount_minor": None
        if data.minimum_order_amount is None
        else parse_field(data.minimum_order_amount, MAXIMUM_DECIMALS, "minimum_order_amount"),
        "per_customer_limit": data.per_customer_limit,
        "created_at": now,
        "updated_at": now,
        "deleted_at": None,
    }
    await repository.insert(connection, values)
    reward = to_reward(await _load(connection, merchant_id, str(values["id"])))
    await _record(connection, merchant_id, "reward.created", reward)
    await _audit(connection, merchant_id, reward, "created", audit.present(reward, AUDITED_FIELDS))
    return reward


async def update_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: str, data: UpdateReward
) -> Reward:
    row = await _load(connection, merchant_id, reward_id, lock=True)
    if row.deleted_at is not None:
        raise RewardNotFoundError(f"No reward {reward_id!r}.", {"reward_id": reward_id})
    settings = await merchants_repository.get_program_settings(connection, merchant_id)
    values: dict[str, Any] = {}
    if not isinstance(data.name, msgspec.UnsetType):
        name = _text(data.name, "name")
        if name is None:
            raise ValidationFailedError.for_field("name", "must not be blank")
        values["name"] = name
    if not isinstance(data.description, msgspec.UnsetType):
        values["description"] = _text(data.description, "description")
    if not isinstance(data.points_cost, msgspec.UnsetType):
        values["points_cost_minor"] = parse_field(
            data.points_cost, settings.points_decimals, "points_cost"
        )
    for field in ("active", "code_validity_days", "per_customer_limit"):
        value = getattr(data, field)
        if not isinstance(value, msgspec.UnsetType):
            values[field] = value
    if not isinstance(data.minimum_order_amount, msgspec.UnsetType):
        amount = data.minimum_order_amount
        values["minimum_order_amount_minor"] = (
            None
            if amount is None
            else parse_field(amount, MAXIMUM_DECIMALS, "minimum_order_amount")
        )
    # The rule is checked again whenever the type, the rule or the cost changes.
    reward_type = (
        row.reward_type if isinstance(data.reward_type, msgspec.UnsetType) else data.reward_type
    )
    rule = (
        msgspec.json.decode(row.reward_rule)
        if isinstance(data.reward_rule, msgspec.UnsetType)
        else data.reward_rule
    )
    if isinstance(data.reward_rule, msgspec.UnsetType):
        rule.pop("points_required", None)
    cost = values.get("points_cost_minor", row.points_cost_minor)
    values["reward_type"] = reward_type
    values["reward_rule"] = _encoder.encode(
        validate_rule(reward_type, rule, format_points(cost))
    ).decode()
    values["updated_at"] = utc_now()
    await repository.update(connection, merchant_id, row.id, values)
    reward = to_reward(await _load(connection, merchant_id, reward_id))
    await _record(connection, merchant_id, "reward.updated", reward)
    changes = audit.changed(to_reward(row), reward, AUDITED_FIELDS)
    if changes:
        await _audit(connection, merchant_id, reward, _activation(changes, "updated"), changes)
    return reward


async def delete_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: str
) -> None:
    """Deactivate and hide; the row stays for the history of customers' rewards."""
    row = await _load(connection, merchant_id, reward_id, lock=True)
    if row.deleted_at is not None:
        raise RewardNotFoundError(f"No reward {reward_id!r}.", {"reward_id": reward_id})
    now = utc_now()
    await repository.update(
        connection, merchant_id, row.id, {"active": False, "deleted_at": now, "updated_at": now}
    )
    reward = to_reward(await _load(connection, merchant_id, reward_id))
    await _record(connection, merchant_id, "reward.deleted", reward)
    await _audit(connection, merchant_id, reward, "deleted", {"name": reward.name})


async def get_reward(connection: AsyncConnection, merchant_id: uuid.UUID, reward_id: str) -> Reward:
    return to_reward(await _load(connection, merchant_id, reward_id))


async def list_rewards(
    connection: AsyncConnection, merchant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> RewardPage:
    limit = check_limit(limit)
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_page(connection, merchant_id, after_number=after, limit=limit + 1)
    page = [to_reward(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].number) if len(rows) > limit else None
    return RewardPage(data=page, next_cursor=next_cursor)


async def get_redeemable(
    database: Database, merchant_id: uuid.UUID, ref: CustomerRef
) -> Redeemable:
    """Balance, the active catalogue with affordability, the customer's rewards newest first."""
    ref = customers_service.check_ref(ref)
    column, value = (
        ("external_id", ref.customer_id)
        if ref.customer_id is not None
        else ("email", ref.customer_email)
    )
    assert value is not None
    rows = await repository.redeemable_rows(
        database, merchant_id, column=column, value=value, limit=CUSTOMER_REWARDS_SHOWN_MAX
    )
    if rows is None:
        raise customer_not_found(ref)
    balance_minor = rows.points_balance_minor
    rewards: list[RedeemableReward] = []
    for row in rows.catalogue:
        needed_minor = max(row.points_cost_minor - balance_minor, 0)
        rewards.append(
            RedeemableReward(
                id=row.id,
                name=row.name,
                description=row.description,
                reward_type=row.reward_type,  # type: ignore[arg-type]
                points_cost=format_points(row.points_cost_minor),
                reward_rule=row.reward_rule,
                can_redeem=needed_minor == 0,
                points_needed=format_points(needed_minor),
            )
        )
    now = utc_now()
    return Redeemable(
        points_balance=format_points(balance_minor),
        rewards=rewards,
        customer_rewards=[to_summary(row, now) for row in rows.held],
    )


# --- redeeming and the life of a customer reward ----------------------------------


def _customer_reward_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _customer_reward_not_found(value) from None


def _customer_reward_not_found(value: str) -> CustomerRewardNotFoundError:
    return CustomerRewardNotFoundError(f"No customer reward {value!r}.", {"id": value})


async def _load_customer_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, value: str, *, lock: bool = False
) -> Any:
    row = await repository.get_customer_reward(
        connection, merchant_id, _customer_reward_id(value), lock=lock
    )
    if row is None:
        raise _customer_reward_not_found(value)
    return row


async def redeem(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    data: RedeemReward,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Debit the reward's cost and issue the customer reward, in one transaction."""
    customer = customers_service.check_ref(ref)
    return await ledger_service.move_points(
        writer,
        merchant_id,
        Redeem(customer, _reward_id(data.reward_id)),  # its cost read in the batch
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


async def revert(
    database: Database,
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    customer_reward_id: str,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Refund an active reward's points (not lifetime) and mark it ``revert``."""
    async with database.read() as connection:
        row = await _load_customer_reward(connection, merchant_id, customer_reward_id)
    return await ledger_service.move_points(
        writer,
        merchant_id,
        # Its points are read again, locked, in the batch (its holder by UUID: an erased
        # customer's rewards answer for their state, never for a missing platform id).
        Revert(CustomerRef(internal_id=row.customer_id), row.id),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


async def get_customer_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_reward_id: str
) -> CustomerRewardDetail:
    row = await _load_customer_reward(connection, merchant_id, customer_reward_id)
    return to_detail(row, row.external_id, utc_now())


def _invalid_state(status: str, action: str, allowed: str) -> InvalidRewardStateError:
    return InvalidRewardStateError(
        f"A reward that is {status!r} cannot be {action}; {allowed}.",
        {"status": status, "action": action},
    )


async def _change(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    row: Any,
    values: dict[str, Any],
    event_type: str,
    now: datetime,
) -> CustomerRewardDetail:
    await repository.update_customer_reward(
        connection, merchant_id, row.id, {**values, "updated_at": now}
    )
    changed = await _load_customer_reward(connection, merchant_id, str(row.id))
    detail = to_detail(changed, changed.external_id, now)
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=event_type,
        subject_id=row.id,
        payload={"customer_reward": msgspec.to_builtins(detail)},
        now=now,
        customer_ref=changed.external_id,
    )
    return detail


async def use_reward(
    connection: AsyncConnection, merchant_id: uuid.UUID, customer_reward_id: str, data: UseReward
) -> CustomerRewardDetail:
    """Mark an active reward used (its code was applied to an order)."""
    check_characters(data.order_id, "order_id")
    row = await _load_customer_reward(connection, merchant_id, customer_reward_id, lock=True)
    now = utc_now()
    status = effective_status(row.status, row.expires_at, now)
    if status != ACTIVE:
        raise _invalid_state(status, "used", "only active rewards can be used")
    order_id = None if data.order_id is None else data.order_id.strip() or None
    return await _change(
        connection,
        merchant_id,
        row,
        {"status": "used", "used_at": now, "order_id": order_id},
        "customer_reward.used",
        now,
    )


# The merchant's own changes to a customer reward: suspend, restore, delete.
_MERCHANT_TRANSITIONS = {"active": {"inactive", "deleted"}, "inactive": {"active", "deleted"}}
_STATUS_EVENTS = {
    "inactive": "customer_reward.deactivated",
    "active": "customer_reward.reactivated",
    "deleted": "customer_reward.deleted",
}


async def change_status(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    customer_reward_id: str,
    data: ChangeCustomerRewardStatus,
) -> CustomerRewardDetail:
    row = await _load_customer_reward(connection, merchant_id, customer_reward_id, lock=True)
    now = utc_now()
    status = effective_status(row.status, row.expires_at, now)
    if status == data.status:
        return to_detail(row, row.external_id, now)  # already so: nothing changes
    if data.status not in _MERCHANT_TRANSITIONS.get(status, set()):
        raise _invalid_state(
            status,
            f"set to {data.status!r}",
            "only active and inactive rewards change status",
        )
    return await _change(
        connection, merchant_id, row, {"status": data.status}, _STATUS_EVENTS[data.status], now
    )


async def expire_due_rewards(
    database: Database, *, now: datetime | None = None, batch_size: int = EXPIRY_BATCH_SIZE
) -> int:
    """Mark active rewards past ``expires_at`` expired, in bounded transactions.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on Postgres, so several
    workers share the work and none expires a reward twice; each claimed row
    is updated only if still active. Returns how many rewards expired.
    """
    moment = now or utc_now()

    async def expire_batch(connection: AsyncConnection) -> int:
        rows = await repository.claim_due_for_expiry(connection, moment, batch_size)
        for row in rows:
            await _change(
                connection,
                row.merchant_id,
                row,
                {"status": "expired"},
                "customer_reward.expired",
                moment,
            )
        return len(rows)

    total = 0
    while True:
        expired = await database.transaction(expire_batch)
        total += expired
        if expired < batch_size:
            return total
