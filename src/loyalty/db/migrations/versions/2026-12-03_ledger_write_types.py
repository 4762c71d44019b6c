"""ledger write types: the batch's rows sent as one array of records per table

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 08:00:00

On Postgres, the ledger writer's hot statement sent one array per column
(some fifty arrays for a batch); the driver checks every element of every
array for nesting, which cost more client CPU than encoding the values, and
Postgres unpacked each array separately. It now sends one array of records per
table, typed by these composite types (the fields are the columns the writer
sends, in its order: ``loyalty.ledger.storage.postgres``; a test compares
them). SQLite has no composite types and writes rows as before: nothing to do
there.
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_TYPES = {
    "ledger_balance_write": """
        merchant_id uuid, customer_id uuid, points_balance_minor int8,
        lifetime_points_minor int8, points_spent_minor int8, points_expired_minor int8,
        pending_points_minor int8, last_sequence int8, last_activity_at timestamptz,
        expiring_lots_minor int8, next_expiry_at timestamptz, next_expiry_minor int8,
        tier_id uuid, tier_expires_at timestamptz, tier_recheck_at timestamptz,
        store_credit_balance_minor int8, initial_sequence int8""",
    "ledger_entry_write": """
        merchant_id uuid, id uuid, customer_id uuid, sequence int8, points_minor int8,
        kind text, description text, internal_note text, visible_to_customer bool,
        apply_to_lifetime bool, lifetime_delta_minor int8, balance_after_minor int8,
        expires_at timestamptz, earn_rule_id uuid, actor text""",
    "ledger_event_write": """
        merchant_id uuid, id uuid, type text, subject_id uuid, payload text,
        customer_ref text, actor text""",
    "ledger_key_write": """
        merchant_id uuid, key text, response_status int4, response_body text,
        request_fingerprint text""",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, fields in _TYPES.items():
        op.execute(f"CREATE TYPE {name} AS ({fields})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in reversed(_TYPES):
        op.execute(f"DROP TYPE {name}")
