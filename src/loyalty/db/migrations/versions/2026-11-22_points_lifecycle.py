"""points lifecycle

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 08:34:55.476798
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tiers",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=False),
        sa.Column("multiplier_hundredths", sa.Integer(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "multiplier_hundredths >= 100", name=op.f("ck_tiers_multiplier_at_least_one")
        ),
        sa.CheckConstraint("threshold_minor >= 0", name=op.f("ck_tiers_threshold_not_negative")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_tiers_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("merchant_id", "name", name=op.f("uq_tiers_merchant_id_name")),
        sa.UniqueConstraint(
            "merchant_id", "threshold_minor", name=op.f("uq_tiers_merchant_id_threshold_minor")
        ),
    )
    op.create_table(
        "pending_credits",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("points_minor", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("internal_note", sa.String(length=500), nullable=True),
        sa.Column("visible_to_customer", sa.Boolean(), nullable=False),
        sa.Column("apply_to_lifetime", sa.Boolean(), nullable=False),
        sa.Column("expires_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("available_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("released_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'released', 'cancelled')",
            name=op.f("ck_pending_credits_status_known"),
        ),
        sa.CheckConstraint("points_minor > 0", name=op.f("ck_pending_credits_points_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "customer_id"],
            ["customers.merchant_id", "customers.id"],
            name=op.f("fk_pending_credits_merchant_id_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_pending_credits")),
    )
    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_pending_credits_customer", ["merchant_id", "customer_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_pending_credits_status_available_at", ["status", "available_at"], unique=False
        )

    op.create_table(
        "point_lots",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("remaining_minor", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("remaining_minor > 0", name=op.f("ck_point_lots_remaining_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "customer_id"],
            ["customers.merchant_id", "customers.id"],
            name=op.f("fk_point_lots_merchant_id_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_point_lots")),
    )
    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_point_lots_customer", ["merchant_id", "customer_id", "expires_at"], unique=False
        )
        batch_op.create_index("ix_point_lots_expires_at", ["expires_at"], unique=False)

    with op.batch_alter_table("customer_balances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_activity_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("expiring_lots_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("next_expiry_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_expiry_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("tier_id", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("tier_expires_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("tier_recheck_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_customer_balances_tier_recheck_at", ["tier_recheck_at"], unique=False
        )
        batch_op.create_check_constraint(
            op.f("ck_customer_balances_expiring_lots_within_balance"),
            "expiring_lots_minor >= 0 AND expiring_lots_minor <= points_balance_minor",
        )

    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expiry_policy", sa.String(length=16), server_default="none", nullable=False)
        )
        batch_op.add_column(sa.Column("expiry_days", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "expiry_changed_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("tier_basis", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("tier_window_days", sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_program_settings_expiry_policy_known"),
            "(expiry_policy = 'none' AND expiry_days IS NULL) OR "
            "(expiry_policy IN ('fixed', 'inactivity') AND expiry_days >= 1)",
        )


def downgrade() -> None:
    with op.batch_alter_table("program_settings", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_program_settings_expiry_policy_known"), type_="check")
        batch_op.drop_column("tier_window_days")
        batch_op.drop_column("tier_basis")
        batch_op.drop_column("expiry_changed_at")
        batch_op.drop_column("expiry_days")
        batch_op.drop_column("expiry_policy")

    with op.batch_alter_table("customer_balances", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("ck_customer_balances_expiring_lots_within_balance"), type_="check"
        )
        batch_op.drop_index("ix_customer_balances_tier_recheck_at")
        batch_op.drop_column("tier_recheck_at")
        batch_op.drop_column("tier_expires_at")
        batch_op.drop_column("tier_id")
        batch_op.drop_column("next_expiry_minor")
        batch_op.drop_column("next_expiry_at")
        batch_op.drop_column("expiring_lots_minor")
        batch_op.drop_column("last_activity_at")

    with op.batch_alter_table("point_lots", schema=None) as batch_op:
        batch_op.drop_index("ix_point_lots_expires_at")
        batch_op.drop_index("ix_point_lots_customer")

    op.drop_table("point_lots")
    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_credits_status_available_at")
        batch_op.drop_index("ix_pending_credits_customer")

    op.drop_table("pending_credits")
    op.drop_table("tiers")
