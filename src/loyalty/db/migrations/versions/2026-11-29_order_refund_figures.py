"""an order's refund figures say what the ledger did

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 20:15:00

A pending credit keeps the points it was created with; ``points_cancelled_minor``
records how many were taken off it (by refunds, or all of them when cancelled).
An order's ``points_removed_minor`` becomes what its refunds actually debited;
the points its refunds stand for in total move to ``refund_points_minor``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("points_cancelled_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("refund_points_minor", sa.BigInteger(), nullable=False, server_default="0")
        )
    # Holds of orders: partial refunds lowered their points, so the order tells the
    # original; what is not pending or released any more was cancelled.
    op.execute(
        """
        UPDATE pending_credits SET
            points_cancelled_minor = (
                SELECT o.points_earned_minor
                       - CASE WHEN pending_credits.status = 'cancelled' THEN 0
                              ELSE pending_credits.points_minor END
                FROM orders o
                WHERE o.merchant_id = pending_credits.merchant_id
                  AND o.pending_id = pending_credits.id),
            points_minor = (
                SELECT o.points_earned_minor FROM orders o
                WHERE o.merchant_id = pending_credits.merchant_id
                  AND o.pending_id = pending_credits.id)
        WHERE EXISTS (
            SELECT 1 FROM orders o
            WHERE o.merchant_id = pending_credits.merchant_id
              AND o.pending_id = pending_credits.id)
        """
    )
    op.execute(
        """
        UPDATE pending_credits SET points_cancelled_minor = points_minor
        WHERE status = 'cancelled' AND points_cancelled_minor = 0
        """
    )
    op.execute(
        """
        UPDATE orders SET
            refund_points_minor = points_removed_minor,
            points_removed_minor = coalesce((
                SELECT sum(r.points_removed_minor) FROM order_refunds r
                WHERE r.merchant_id = orders.merchant_id AND r.order_row_id = orders.id), 0)
        """
    )


def downgrade() -> None:
    op.execute("UPDATE orders SET points_removed_minor = refund_points_minor")
    op.execute(
        """
        UPDATE pending_credits SET points_minor = points_minor - points_cancelled_minor
        WHERE status <> 'cancelled' AND points_cancelled_minor > 0
        """
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("refund_points_minor")
    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.drop_column("points_cancelled_minor")
