"""GDPR requests about one customer: erasure and access.

- **Erasure** (``erase_customer``) is a ledger movement (``ledger.operations.erase``):
  decided under the customer's balance lock, in one transaction, so it is
  ordered with every other movement of the customer and nothing is left
  half-written.
- **Access** (``customer_data``) reads everything held about the customer in one
  read transaction (one snapshot), each item shaped as the API shows it
  elsewhere.
"""

from __future__ import annotations

import uuid
from typing import Any

from loyalty.customers import privacy_repository as repository
from loyalty.customers import repository as customers_repository
from loyalty.customers import service as customers_service
from loyalty.customers.privacy_schemas import (
    ActionReward,
    CustomerData,
    CustomerReferral,
)
from loyalty.customers.refs import CustomerRef
from loyalty.db.engine import Database
from loyalty.db.types import utc_now
from loyalty.ledger import service as ledger_service
from loyalty.ledger.engine.protocol import Outcome
from loyalty.ledger.engine.rows import OrderRow, PendingRow, RefundRow, columns
from loyalty.ledger.engine.views import pending_view
from loyalty.ledger.operations.erase import Erase
from loyalty.ledger.operations.orders import order_view
from loyalty.ledger.operations.refunds import refund_view
from loyalty.ledger.writer import LedgerWriter
from loyalty.points import format_points
from loyalty.rewards.customer_rewards import to_detail


async def erase_customer(
    writer: LedgerWriter,
    merchant_id: uuid.UUID,
    ref: CustomerRef,
    *,
    idempotency_key: str | None,
    request_fingerprint: str,
) -> Outcome:
    """Erase the customer's personal data (204), or 404 if no customer has this platform
    id or email (erased customers have neither)."""
    return await ledger_service.move_points(
        writer,
        merchant_id,
        Erase(customers_service.check_ref(ref)),
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )


def _typed(row_class: type[Any], row: Any) -> Any:
    """A database row as the ledger's typed row (its views take those)."""
    return row_class(**{column: getattr(row, column) for column in columns(row_class)})


async def customer_data(
    database: Database, merchant_id: uuid.UUID, ref: CustomerRef
) -> CustomerData:
    """Everything held about the customer, read in one snapshot."""
    ref = customers_service.check_ref(ref)
    async with database.read() as connection:
        await repository.snapshot(connection)
        customer_id = await customers_service.resolve_customer_id(connection, merchant_id, ref)
        row = await customers_repository.find_by_id(connection, merchant_id, customer_id)
        customer = await customers_service.customer_view(connection, merchant_id, row)
        entries = await repository.entries(connection, merchant_id, customer_id)
        pending_rows = await repository.pending(connection, merchant_id, customer_id)
        reward_rows = await repository.rewards(connection, merchant_id, customer_id)
        order_rows = await repository.customer_orders(connection, merchant_id, customer_id)
        refund_rows = await repository.refunds(connection, merchant_id, customer_id)
        action_rows = await repository.actions(connection, merchant_id, customer_id)
        referral = await customers_repository.referral_state(connection, merchant_id, customer_id)
    now = utc_now()
    platform_id = customer.customer_id
    holds: dict[uuid.UUID, PendingRow] = {
        pending.id: _typed(PendingRow, pending) for pending in pending_rows
    }
    orders_by_row: dict[uuid.UUID, OrderRow] = {
        order.id: _typed(OrderRow, order) for order in order_rows
    }

    def hold_of(order: OrderRow) -> PendingRow | None:
        return None if order.pending_id is None else holds.get(order.pending_id)

    return CustomerData(
        customer=customer,
        transactions=[ledger_service.to_transaction(entry) for entry in entries],
        pending_credits=[pending_view(pending) for pending in pending_rows],
        customer_rewards=[to_detail(reward, platform_id, now) for reward in reward_rows],
        orders=[order_view(order, platform_id, hold_of(order)) for order in orders_by_row.values()],
        refunds=[
            refund_view(
                _typed(RefundRow, refund),
                orders_by_row[refund.order_row_id],
                platform_id,
                hold_of(orders_by_row[refund.order_row_id]),
            )
            for refund in refund_rows
        ],
        actions=[
            ActionReward(
                id=action.id,
                action=action.action,
                points=format_points(action.points_minor),
                earn_rule_id=action.earn_rule_id,
                transaction_id=action.transaction_id,
                created_at=action.created_at,
            )
            for action in action_rows
        ],
        referral=CustomerReferral(
            referral_code=referral.referral_code,
            referred_by=referral.referred_by,
            referral_completed_at=referral.referral_completed_at,
            referred_completed=referral.referred_completed,
        ),
    )
