"""customer status reason

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:04:00.009338
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_reason", sa.String(length=500), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_customers_status_known"),
            "status IN ('active', 'inactive', 'excluded', 'excluded_by_customer')",
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_customers_status_known"), type_="check")
        batch_op.drop_column("status_reason")
