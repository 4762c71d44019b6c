"""staff users

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 07:00:00

The merchant's staff: an email per merchant, a role (``admin`` or
``support``), an argon2 password hash; disabled users keep their row (the
audit trail names them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("disabled_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_users")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_users_merchant_id_merchants")
        ),
        sa.UniqueConstraint("merchant_id", "email", name=op.f("uq_users_merchant_id_email")),
        sa.CheckConstraint("role IN ('admin', 'support')", name=op.f("ck_users_role_known")),
    )


def downgrade() -> None:
    op.drop_table("users")
