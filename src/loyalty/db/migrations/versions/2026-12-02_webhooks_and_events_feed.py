"""events get a per-merchant sequence and the customer's platform id; webhook
endpoints and delivery attempts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:00:00

``events.sequence`` is stamped after the event's transaction has committed
(``loyalty.events.feed``), in the order the feed serves events, from the
counter in ``event_sequences``; existing events are stamped here in creation
order. ``events.customer_ref`` is the customer's platform id (existing events
get it from the customer, reward, pending credit or order they are about).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("customer_ref", sa.String(255), nullable=True))
    op.execute(
        """
        UPDATE events SET customer_ref = (
            SELECT c.external_id FROM customers c
            WHERE c.merchant_id = events.merchant_id AND c.id = COALESCE(
                (SELECT r.customer_id FROM customer_rewards r
                 WHERE r.merchant_id = events.merchant_id AND r.id = events.subject_id),
                (SELECT p.customer_id FROM pending_credits p
                 WHERE p.merchant_id = events.merchant_id AND p.id = events.subject_id),
                (SELECT o.customer_id FROM orders o
                 WHERE o.merchant_id = events.merchant_id AND o.id = events.subject_id),
                events.subject_id
            )
        )
        """
    )
    op.execute(
        """
        UPDATE events SET sequence = numbered.n FROM (
            SELECT merchant_id, id,
                   row_number() OVER (PARTITION BY merchant_id ORDER BY created_at, id) AS n
            FROM events
        ) AS numbered
        WHERE numbered.merchant_id = events.merchant_id AND numbered.id = events.id
        """
    )
    op.create_table(
        "event_sequences",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_event_sequences")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_event_sequences_merchant_id_merchants")
        ),
    )
    op.execute(
        """
        INSERT INTO event_sequences (merchant_id, last_sequence)
        SELECT merchant_id, max(sequence) FROM events GROUP BY merchant_id
        """
    )
    # The feed (and the customer filter) in sequence order, numbered events only
    # (writing an event touches neither); events not numbered yet.
    op.create_index(
        op.f("ux_events_sequence"),
        "events",
        ["merchant_id", "sequence"],
        unique=True,
        postgresql_where=sa.text("sequence IS NOT NULL"),
        sqlite_where=sa.text("sequence IS NOT NULL"),
    )
    op.create_index(
        "ix_events_customer_sequence",
        "events",
        ["merchant_id", "customer_ref", "sequence"],
        postgresql_where=sa.text("sequence IS NOT NULL"),
        sqlite_where=sa.text("sequence IS NOT NULL"),
    )
    op.create_index(
        "ix_events_unstamped",
        "events",
        ["merchant_id", "id"],
        postgresql_where=sa.text("sequence IS NULL"),
        sqlite_where=sa.text("sequence IS NULL"),
    )

    op.create_table(
        "webhook_endpoints",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        # A JSON list of event types; NULL: every type.
        sa.Column("event_types", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("secret", sa.String(100), nullable=False),
        # The secret before the last rotation, signing beside the new one until then.
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column(
            "previous_secret_expires_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True
        ),
        # The first failure since the last success (disabled after 5 days of it).
        sa.Column("failing_since", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_webhook_endpoints")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_webhook_endpoints_merchant_id_merchants"),
        ),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scheduled_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        # A worker sending it holds it until then (a killed worker's claim lapses).
        sa.Column("locked_until", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempted_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_duration_ms", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_webhook_attempts")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "endpoint_id"],
            ["webhook_endpoints.merchant_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
            name=op.f("fk_webhook_attempts_merchant_id_endpoint_id_webhook_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id", "event_id"],
            ["events.merchant_id", "events.id"],
            ondelete="CASCADE",
            name=op.f("fk_webhook_attempts_merchant_id_event_id_events"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_webhook_attempts_status")
        ),
        sa.CheckConstraint(
            "\"trigger\" IN ('scheduled', 'manual')", name=op.f("ck_webhook_attempts_trigger")
        ),
    )
    # What is due, across merchants (the workers' claim).
    op.create_index(
        "ix_webhook_attempts_due",
        "webhook_attempts",
        ["scheduled_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    # An endpoint's log, newest first; an event's attempts at an endpoint.
    op.create_index(
        "ix_webhook_attempts_endpoint", "webhook_attempts", ["merchant_id", "endpoint_id", "id"]
    )
    op.create_index(
        "ix_webhook_attempts_event",
        "webhook_attempts",
        ["merchant_id", "endpoint_id", "event_id", "attempt"],
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_events_unstamped", table_name="events")
    op.drop_index("ix_events_customer_sequence", table_name="events")
    op.drop_index("ux_events_sequence", table_name="events")
    op.drop_table("event_sequences")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("customer_ref")
        batch_op.drop_column("sequence")
