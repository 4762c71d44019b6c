"""admin: audit trail, daily rollups, sessions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 08:00:00

- ``ledger_entries.actor`` and ``events.actor``: who made the entry or the
  event (``user:<email>``, ``api_key:<prefix>``, ``system``,
  ``import:<id>``). Rows written before this revision get ``system`` when a
  job wrote them (expiry) and ``api_key:unknown`` otherwise.
- ``config_changes``: every configuration change (rewards, earn rules, tiers,
  programme settings, API keys, webhook endpoints, users) with its actor.
- ``daily_rollups``: per merchant, UTC day and metric, what the ledger moved
  (``entry:<kind>``), members enrolled and erased (``members``) and points
  held and let go as pending (``pending``); written in the same transaction
  as what they count, spread over a few shard rows so concurrent writers of
  one merchant do not queue on one row. Back-filled here from the entries,
  the customers and the pending credits.
- ``program_settings.point_value_micros``: the money value of one point in
  millionths of the currency's unit (default 10000: 0.01).
- ``admin_sessions``, ``login_attempts`` and ``instance_secrets`` for the
  admin UI's sessions, login throttle and generated secret key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _day(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)"
    return f"date({column})"


def _backfill_rollups() -> None:
    day = _day
    statements = [
        # Every entry, by kind: credits in plus, debits in minus.
        f"""INSERT INTO daily_rollups
              (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
            SELECT merchant_id, {day("created_at")}, 'entry:' || kind, 0,
                   SUM(CASE WHEN points_minor > 0 THEN points_minor ELSE 0 END),
                   SUM(CASE WHEN points_minor < 0 THEN -points_minor ELSE 0 END),
                   COUNT(*)
            FROM ledger_entries
            GROUP BY merchant_id, {day("created_at")}, kind""",
        # Members enrolled (erased ones leave on the day they were last updated).
        f"""INSERT INTO daily_rollups
              (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
            SELECT merchant_id, {day("created_at")}, 'members', 0, COUNT(*), 0, COUNT(*)
            FROM customers GROUP BY merchant_id, {day("created_at")}""",
        f"""INSERT INTO daily_rollups
              (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
            SELECT merchant_id, {day("updated_at")}, 'members', 1, 0, COUNT(*), COUNT(*)
            FROM customers WHERE status = 'erased'
            GROUP BY merchant_id, {day("updated_at")}""",
        # Points held now, on the day they were held.
        f"""INSERT INTO daily_rollups
              (merchant_id, day, metric, shard, plus_minor, minus_minor, count)
            SELECT merchant_id, {day("created_at")}, 'pending', 0,
                   SUM(points_minor - points_cancelled_minor), 0, COUNT(*)
            FROM pending_credits WHERE status = 'pending'
            GROUP BY merchant_id, {day("created_at")}""",
    ]
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(
            sa.Column("actor", sa.String(300), nullable=False, server_default="api_key:unknown")
        )
    op.execute("UPDATE ledger_entries SET actor = 'system' WHERE kind = 'expire'")
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("actor", sa.String(300), nullable=False, server_default="api_key:unknown")
        )
    op.execute(
        "UPDATE events SET actor = 'system' WHERE type IN "
        "('customer_reward.expired', 'webhook_endpoint.disabled', 'customer.tier_changed')"
    )
    with op.batch_alter_table("program_settings") as batch:
        batch.add_column(
            sa.Column("point_value_micros", sa.BigInteger(), nullable=False, server_default="10000")
        )
        batch.create_check_constraint(
            op.f("ck_program_settings_point_value_not_negative"), "point_value_micros >= 0"
        )
    op.create_table(
        "config_changes",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_config_changes")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_config_changes_merchant_id_merchants")
        ),
    )
    op.create_table(
        "daily_rollups",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(48), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("plus_minor", sa.BigInteger(), nullable=False),
        sa.Column("minus_minor", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "merchant_id", "day", "metric", "shard", name=op.f("pk_daily_rollups")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_daily_rollups_merchant_id_merchants")
        ),
    )
    _backfill_rollups()
    op.create_table(
        "admin_sessions",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        # SHA-256 of the cookie's secret part: a copy of the table opens no session.
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "token_hash", name=op.f("pk_admin_sessions")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "user_id"],
            ["users.merchant_id", "users.id"],
            name=op.f("fk_admin_sessions_merchant_id_users"),
        ),
        sa.Index("ix_admin_sessions_user", "merchant_id", "user_id"),
    )
    op.create_table(
        "login_attempts",
        # The email as typed, lower-cased: known or not (the throttle tells nothing).
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("attempted_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", "id", name=op.f("pk_login_attempts")),
        sa.Index("ix_login_attempts_email_at", "email", "attempted_at"),
    )
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instance_secrets")),
    )


def downgrade() -> None:
    op.drop_table("instance_secrets")
    op.drop_table("login_attempts")
    op.drop_table("admin_sessions")
    op.drop_table("daily_rollups")
    op.drop_table("config_changes")
    with op.batch_alter_table("program_settings") as batch:
        batch.drop_constraint(op.f("ck_program_settings_point_value_not_negative"), type_="check")
        batch.drop_column("point_value_micros")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("actor")
