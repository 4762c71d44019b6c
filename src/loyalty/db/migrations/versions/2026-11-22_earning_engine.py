"""earning engine

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:09:50.631056
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "earn_rules",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("points_minor", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("points_per_currency_unit_minor", sa.BigInteger(), nullable=True),
        sa.Column("rounding", sa.String(length=8), nullable=True),
        sa.Column("min_order_total_minor", sa.BigInteger(), nullable=True),
        sa.Column("pending_days", sa.Integer(), nullable=True),
        sa.Column("referee_points_minor", sa.BigInteger(), nullable=True),
        sa.Column("max_per_customer", sa.Integer(), nullable=True),
        sa.Column("period_days", sa.Integer(), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("points_minor >= 0", name=op.f("ck_earn_rules_points_not_negative")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_earn_rules_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_earn_rules")),
        sa.UniqueConstraint("merchant_id", "type", name=op.f("uq_earn_rules_merchant_id_type")),
    )
    op.create_table(
        "orders",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("discount_codes", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_earned_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_removed_minor", sa.BigInteger(), nullable=False),
        sa.Column("pending_id", sa.Uuid(), nullable=True),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("earn_rule_id", sa.Uuid(), nullable=True),
        sa.Column("not_earned_reason", sa.String(length=32), nullable=True),
        sa.Column("placed_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor",
            name=op.f("ck_orders_refund_within"),
        ),
        sa.CheckConstraint("total_minor >= 0", name=op.f("ck_orders_total_not_negative")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "customer_id"],
            ["customers.merchant_id", "customers.id"],
            name=op.f("fk_orders_merchant_id_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_orders")),
        sa.UniqueConstraint("merchant_id", "order_id", name=op.f("uq_orders_merchant_id_order_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_customer", ["merchant_id", "customer_id", "placed_at"], unique=False
        )

    op.create_table(
        "order_refunds",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_row_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_removed_minor", sa.BigInteger(), nullable=False),
        sa.Column("points_cancelled_minor", sa.BigInteger(), nullable=False),
        sa.Column("shortfall_minor", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id", "order_row_id"],
            ["orders.merchant_id", "orders.id"],
            name=op.f("fk_order_refunds_merchant_id_order_row_id_orders"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_order_refunds")),
    )
    with op.batch_alter_table("order_refunds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_refunds_order", ["merchant_id", "order_row_id"], unique=False
        )

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("earn_rule_id", sa.Uuid(), nullable=True))

    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("earn_rule_id", sa.Uuid(), nullable=True))

    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.drop_column("currency")

    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.drop_column("earn_rule_id")

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_column("earn_rule_id")

    with op.batch_alter_table("order_refunds", schema=None) as batch_op:
        batch_op.drop_index("ix_order_refunds_order")

    op.drop_table("order_refunds")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_customer")

    op.drop_table("orders")
    op.drop_table("earn_rules")
