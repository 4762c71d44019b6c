"""customer actions and referrals

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 09:21:09.307498
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_actions",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("earn_rule_id", sa.Uuid(), nullable=False),
        sa.Column("points_minor", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id", "customer_id"],
            ["customers.merchant_id", "customers.id"],
            name=op.f("fk_customer_actions_merchant_id_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_customer_actions")),
    )
    with op.batch_alter_table("customer_actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_customer_actions_customer",
            ["merchant_id", "customer_id", "action", "created_at"],
            unique=False,
        )

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rewarded_actions", sa.Text(), server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("referral_code", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("referred_by", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "referral_completed_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("referred_completed", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_customers_merchant_id_referral_code"), ["merchant_id", "referral_code"]
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_customers_merchant_id_referral_code"), type_="unique"
        )
        batch_op.drop_column("referred_completed")
        batch_op.drop_column("referral_completed_at")
        batch_op.drop_column("referred_by")
        batch_op.drop_column("referral_code")
        batch_op.drop_column("rewarded_actions")

    with op.batch_alter_table("customer_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_actions_customer")

    op.drop_table("customer_actions")
