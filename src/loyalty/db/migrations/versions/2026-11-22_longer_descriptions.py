"""longer descriptions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:59:45.313779
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite does not enforce VARCHAR lengths: no table to rebuild
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "description",
            existing_type=sa.VARCHAR(length=255),
            type_=sa.String(length=500),
            existing_nullable=False,
        )

    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.alter_column(
            "description",
            existing_type=sa.VARCHAR(length=255),
            type_=sa.String(length=500),
            existing_nullable=False,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    with op.batch_alter_table("pending_credits", schema=None) as batch_op:
        batch_op.alter_column(
            "description",
            existing_type=sa.String(length=500),
            type_=sa.VARCHAR(length=255),
            existing_nullable=False,
        )

    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.alter_column(
            "description",
            existing_type=sa.String(length=500),
            type_=sa.VARCHAR(length=255),
            existing_nullable=False,
        )
