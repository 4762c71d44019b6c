"""The schema, as SQLAlchemy Core tables.

Rules: every table carries ``merchant_id`` in its primary key and in every
unique key, so the data can be distributed by merchant. Points are BIGINT
minor units (hundredths of a point, see ``loyalty.points``). Ledger entries
are immutable: rows are only ever inserted.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from loyalty.db.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

merchants = Table(
    "merchants",
    metadata,
    Column("id", Uuid, nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("id"),
)

program_settings = Table(
    "program_settings",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("points_decimals", Integer, nullable=False, server_default="0"),
    Column("default_description", String(255), nullable=False),
    # The last reward number handed out (rewards are numbered 1, 2, 3... per merchant).
    Column("reward_number_last", BigInteger, nullable=False, server_default="0"),
    # Discount codes read PREFIX-XXXX-XXXX ('' for no prefix).
    Column("discount_code_prefix", String(12), nullable=False, server_default=""),
    # Expiry: 'none', 'fixed' (each credit N days after it) or 'inactivity'.
    Column("expiry_policy", String(16), nullable=False, server_default="none"),
    Column("expiry_days", Integer, nullable=True),
    # When the policy last changed: inactivity is counted from here at the
    # earliest, so turning expiry on is never retroactive.
    Column("expiry_changed_at", UTCDateTime, nullable=True),
    # What tiers are reached on ('lifetime_points' | 'amount_spent'; NULL: no
    # tiers) and over how many days (NULL: all time); shared by every tier.
    Column("tier_basis", String(16), nullable=True),
    Column("tier_window_days", Integer, nullable=True),
    # ISO 4217 code of the shop's money (orders, thresholds on spend).
    Column("currency", String(3), nullable=False, server_default="USD"),
    # The money value of one point, in millionths of the currency (10000: 0.01).
    Column("point_value_micros", BigInteger, nullable=False, server_default="10000"),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    CheckConstraint("points_decimals BETWEEN 0 AND 2", name="points_decimals_range"),
    CheckConstraint("point_value_micros >= 0", name="point_value_not_negative"),
    CheckConstraint(
        "(expiry_policy = 'none' AND expiry_days IS NULL) OR "
        "(expiry_policy IN ('fixed', 'inactivity') AND expiry_days >= 1)",
        name="expiry_policy_known",
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", String(200), nullable=False),
    # The public, non-secret part of the token, used to find the key.
    Column("prefix", String(16), nullable=False),
    # SHA-256 of the whole token (tokens carry 190 random bits, so a fast
    # hash is safe; passwords, which are guessable, use argon2 instead).
    Column("token_sha256", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("rate_limit", String(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "prefix"),
    # Authentication looks a key up by prefix alone (the merchant is not yet
    # known); api_keys is small and would be a reference table on Citus.
    Index("ix_api_keys_prefix", "prefix"),
)

_SEARCH_TYPE = String(100).with_variant(String(100, collation="C"), "postgresql")

# The merchant's staff (the admin UI's accounts); disabled ones keep their row.
users = Table(
    "users",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("email", String(254), nullable=False),
    Column("role", String(16), nullable=False),
    # argon2id, with its parameters and salt (argon2-cffi's encoded form).
    Column("password_hash", String(255), nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "email"),
    CheckConstraint("role IN ('admin', 'support')", name="role_known"),
)

customers = Table(
    "customers",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    # The shop platform's customer id (e.g. Shopify's), the API's customer_id.
    # NULL once the customer is erased (the id is free to enrol again).
    Column("external_id", String(255), nullable=True),
    Column("email", String(254), nullable=True),
    Column("first_name", String(100), nullable=True),
    Column("last_name", String(100), nullable=True),
    # The names in lower case (Python's folding, on both databases) for the
    # prefix search; binary collation on Postgres so that a prefix is a range.
    Column("first_name_search", _SEARCH_TYPE, nullable=True),
    Column("last_name_search", _SEARCH_TYPE, nullable=True),
    Column("date_of_birth", Date, nullable=True),
    Column("status", String(32), nullable=False, server_default="active"),
    # Why the merchant last changed the status (staff-facing).
    Column("status_reason", String(500), nullable=True),
    Column("total_spent_minor", BigInteger, nullable=False, server_default="0"),
    # The actions ever rewarded (JSON list of earn rule types), for the profile.
    Column("rewarded_actions", Text, nullable=False, server_default="[]"),
    # Referrals: this customer's code (made when first asked for), who referred it,
    # when its first order completed that referral, how many it has completed.
    Column("referral_code", String(16), nullable=True),
    Column("referred_by", Uuid, nullable=True),
    Column("referral_completed_at", UTCDateTime, nullable=True),
    Column("referred_completed", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "external_id"),
    UniqueConstraint("merchant_id", "email"),
    UniqueConstraint("merchant_id", "referral_code"),
    CheckConstraint(
        "status IN ('active', 'inactive', 'excluded', 'excluded_by_customer', 'erased')",
        name="status_known",
    ),
    # The list (newest first, by status) and the search by name prefix; on
    # Postgres also ix_customers_email_c (merchant_id, email COLLATE "C"), made
    # by migration 0011, for the email prefix. Migration 0014 makes
    # ix_customers_birthday (month and day of date_of_birth, merchant_id) on both
    # databases, an expression per dialect (loyalty.ledger.repository.BIRTHDAY_KEY).
    Index("ix_customers_created_at", "merchant_id", "created_at", "id"),
    Index("ix_customers_status_created_at", "merchant_id", "status", "created_at", "id"),
    Index("ix_customers_first_name_search", "merchant_id", "first_name_search"),
    Index("ix_customers_last_name_search", "merchant_id", "last_name_search"),
)

customer_balances = Table(
    "customer_balances",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("points_balance_minor", BigInteger, nullable=False, server_default="0"),
    Column("pending_points_minor", BigInteger, nullable=False, server_default="0"),
    Column("lifetime_points_minor", BigInteger, nullable=False, server_default="0"),
    Column("points_spent_minor", BigInteger, nullable=False, server_default="0"),
    Column("points_expired_minor", BigInteger, nullable=False, server_default="0"),
    Column("store_credit_balance_minor", BigInteger, nullable=False, server_default="0"),
    # Sequence of the customer's last ledger entry; entries are numbered 1, 2, 3...
    Column("last_sequence", BigInteger, nullable=False, server_default="0"),
    # The last earning or redemption (inactivity expiry counts from it).
    Column("last_activity_at", UTCDateTime, nullable=True),
    # Points in expiring lots (the sum of point_lots.remaining_minor) and the
    # next lot to expire, kept with the balance for reads.
    Column("expiring_lots_minor", BigInteger, nullable=False, server_default="0"),
    Column("next_expiry_at", UTCDateTime, nullable=True),
    Column("next_expiry_minor", BigInteger, nullable=False, server_default="0"),
    Column("tier_id", Uuid, nullable=True),
    # Kept by retention although no longer qualifying: the tier lapses then.
    Column("tier_expires_at", UTCDateTime, nullable=True),
    # When the tier must be looked at again without any movement (a retention
    # ending, points leaving a rolling window); the scheduler's index.
    Column("tier_recheck_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "customer_id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    CheckConstraint("points_balance_minor >= 0", name="points_balance_not_negative"),
    CheckConstraint("pending_points_minor >= 0", name="pending_points_not_negative"),
    CheckConstraint("lifetime_points_minor >= 0", name="lifetime_points_not_negative"),
    CheckConstraint(
        "expiring_lots_minor >= 0 AND expiring_lots_minor <= points_balance_minor",
        name="expiring_lots_within_balance",
    ),
    Index("ix_customer_balances_tier_recheck_at", "tier_recheck_at"),
    Index(
        "ix_customer_balances_points_balance", "merchant_id", "points_balance_minor", "customer_id"
    ),
    Index("ix_customer_balances_tier", "merchant_id", "tier_id"),
    # An inactivity programme's idle balances (the scheduler's range).
    Index(
        "ix_customer_balances_inactivity",
        "merchant_id",
        "last_activity_at",
        postgresql_where=text("points_balance_minor > 0"),
        sqlite_where=text("points_balance_minor > 0"),
    ),
)

# The unspent part of each credit that will expire (fixed policy or an
# explicit expires_at). Debits spend the earliest-expiring lots first; a lot
# spent to zero is deleted. Points without a lot never expire.
point_lots = Table(
    "point_lots",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    # The ledger entry that credited the points.
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("remaining_minor", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    CheckConstraint("remaining_minor > 0", name="remaining_positive"),
    Index("ix_point_lots_customer", "merchant_id", "customer_id", "expires_at"),
    Index("ix_point_lots_expires_at", "expires_at"),
)

# Credits on hold (e.g. an order's return window): counted in pending_points,
# never redeemable, never expiring; released into the ledger when due or
# approved, or cancelled.
pending_credits = Table(
    "pending_credits",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    # What it was created with; ``points_cancelled_minor`` of them were taken off (by
    # refunds, or all when cancelled): the rest is pending, or was released.
    Column("points_minor", BigInteger, nullable=False),
    Column("points_cancelled_minor", BigInteger, nullable=False, server_default="0"),
    Column("kind", String(32), nullable=False),
    # Customer-facing: 255 on the native API, 500 for Appstle's notes.
    Column("description", String(500), nullable=False),
    Column("internal_note", String(500), nullable=True),
    Column("visible_to_customer", Boolean, nullable=False),
    Column("apply_to_lifetime", Boolean, nullable=False),
    # An explicit expiry for the points once released (else the policy's).
    Column("expires_at", UTCDateTime, nullable=True),
    Column("status", String(16), nullable=False),
    Column("available_at", UTCDateTime, nullable=False),
    # The ledger entry that released it.
    Column("transaction_id", Uuid, nullable=True),
    Column("earn_rule_id", Uuid, nullable=True),
    Column("released_at", UTCDateTime, nullable=True),
    Column("cancelled_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    CheckConstraint("points_minor > 0", name="points_positive"),
    CheckConstraint("status IN ('pending', 'released', 'cancelled')", name="status_known"),
    Index("ix_pending_credits_customer", "merchant_id", "customer_id", "status"),
    Index("ix_pending_credits_status_available_at", "status", "available_at"),
)

# VIP tiers, ordered by threshold (on the programme's tier_basis).
tiers = Table(
    "tiers",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("name", String(100), nullable=False),
    # Points or money, in hundredths.
    Column("threshold_minor", BigInteger, nullable=False),
    # Earning multiplier in hundredths (100 = x1).
    Column("multiplier_hundredths", Integer, nullable=False),
    Column("retention_days", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "threshold_minor"),
    UniqueConstraint("merchant_id", "name"),
    CheckConstraint("threshold_minor >= 0", name="threshold_not_negative"),
    CheckConstraint("multiplier_hundredths >= 100", name="multiplier_at_least_one"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("points_minor", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    # Customer-facing: 255 on the native API, 500 for Appstle's notes.
    Column("description", String(500), nullable=False),
    Column("internal_note", String(500), nullable=True),
    Column("visible_to_customer", Boolean, nullable=False),
    Column("apply_to_lifetime", Boolean, nullable=False),
    # What this entry changed lifetime_points by (lifetime never goes below 0).
    Column("lifetime_delta_minor", BigInteger, nullable=False),
    Column("balance_after_minor", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    # The earn rule that granted the points (reporting).
    Column("earn_rule_id", Uuid, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # Who made it: user:<email>, api_key:<prefix>, system or import:<id>.
    Column("actor", String(300), nullable=False, server_default="api_key:unknown"),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    UniqueConstraint("merchant_id", "customer_id", "sequence"),
    CheckConstraint("points_minor <> 0", name="points_not_zero"),
    CheckConstraint("balance_after_minor >= 0", name="balance_after_not_negative"),
    # The ledger export, oldest first.
    Index("ix_ledger_entries_created_at", "merchant_id", "created_at", "id"),
)

rewards = Table(
    "rewards",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    # Per-merchant integer id for surfaces with integer ids (Appstle's redeemRuleId).
    Column("number", BigInteger, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", String(500), nullable=True),
    Column("reward_type", String(32), nullable=False),
    Column("points_cost_minor", BigInteger, nullable=False),
    # The type's rule as validated JSON (amounts as JSON numbers).
    Column("reward_rule", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("code_validity_days", Integer, nullable=True),
    # Money in hundredths of the shop's currency unit.
    Column("minimum_order_amount_minor", BigInteger, nullable=True),
    Column("per_customer_limit", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Deleting keeps the row (customers' rewards refer to it) and hides it.
    Column("deleted_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "number"),
    CheckConstraint("points_cost_minor > 0", name="points_cost_positive"),
)

customer_rewards = Table(
    "customer_rewards",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("reward_id", Uuid, nullable=False),
    # What was redeemed, as it was at the time (the catalogue may change later).
    Column("reward_type", String(32), nullable=False),
    Column("reward_name", String(200), nullable=False),
    Column("reward_rule", Text, nullable=False),
    Column("status", String(16), nullable=False),
    # Unique per merchant; NULL for rewards without a code (store credit).
    Column("discount_code", String(32), nullable=True),
    Column("points_used_minor", BigInteger, nullable=False),
    # Store credit granted, in hundredths of the shop's currency unit.
    Column("store_credit_minor", BigInteger, nullable=True),
    Column("order_id", String(255), nullable=True),
    # The ledger entries of the redemption and of its refund.
    Column("redeem_transaction_id", Uuid, nullable=False),
    Column("revert_transaction_id", Uuid, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("used_at", UTCDateTime, nullable=True),
    Column("reverted_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    ForeignKeyConstraint(["merchant_id", "reward_id"], ["rewards.merchant_id", "rewards.id"]),
    UniqueConstraint("merchant_id", "discount_code"),
    CheckConstraint(
        "status IN ('active', 'used', 'inactive', 'expired', 'deleted', 'revert')",
        name="status_known",
    ),
    CheckConstraint("points_used_minor > 0", name="points_used_positive"),
    # A customer's rewards, newest first.
    Index("ix_customer_rewards_customer", "merchant_id", "customer_id", "created_at"),
    # The expiry job's scan across merchants.
    Index("ix_customer_rewards_status_expires_at", "status", "expires_at"),
)

events = Table(
    "events",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    # UUIDv7: ordered by creation time.
    Column("id", Uuid, nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject_id", Uuid, nullable=True),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Stamped after the event's transaction committed, in feed order (gap-free
    # per merchant); NULL until then (loyalty.events.feed).
    Column("sequence", BigInteger, nullable=True),
    # The platform id of the customer the event is about, if any.
    Column("customer_ref", String(255), nullable=True),
    # Who caused it (as ledger_entries.actor).
    Column("actor", String(300), nullable=False, server_default="api_key:unknown"),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    # Numbered events only: writing an event (sequence NULL) touches neither.
    Index(
        "ux_events_sequence",
        "merchant_id",
        "sequence",
        unique=True,
        postgresql_where=text("sequence IS NOT NULL"),
        sqlite_where=text("sequence IS NOT NULL"),
    ),
    Index(
        "ix_events_customer_sequence",
        "merchant_id",
        "customer_ref",
        "sequence",
        postgresql_where=text("sequence IS NOT NULL"),
        sqlite_where=text("sequence IS NOT NULL"),
    ),
    Index(
        "ix_events_unstamped",
        "merchant_id",
        "id",
        postgresql_where=text("sequence IS NULL"),
        sqlite_where=text("sequence IS NULL"),
    ),
)

# The last sequence stamped on each merchant's events (locked while stamping).
event_sequences = Table(
    "event_sequences",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("last_sequence", BigInteger, nullable=False),
    PrimaryKeyConstraint("merchant_id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
)

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("url", String(2000), nullable=False),
    Column("description", String(500), nullable=True),
    # A JSON list of event types; NULL: every type.
    Column("event_types", Text, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("disabled_reason", String(500), nullable=True),
    Column("secret", String(100), nullable=False),
    # The secret before the last rotation, signing beside the new one until then.
    Column("previous_secret", String(100), nullable=True),
    Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    # The first failure since the last success (disabled after 5 days of it).
    Column("failing_since", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
)

# Each (endpoint, event) is one delivery: its attempts, the next one pending.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("endpoint_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("scheduled_at", UTCDateTime, nullable=False),
    # A worker sending it holds it until then (a killed worker's claim lapses).
    Column("locked_until", UTCDateTime, nullable=True),
    Column("attempted_at", UTCDateTime, nullable=True),
    Column("response_status", Integer, nullable=True),
    Column("response_duration_ms", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("error", String(500), nullable=True),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(
        ["merchant_id", "endpoint_id"],
        ["webhook_endpoints.merchant_id", "webhook_endpoints.id"],
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(
        ["merchant_id", "event_id"], ["events.merchant_id", "events.id"], ondelete="CASCADE"
    ),
    CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    CheckConstraint("\"trigger\" IN ('scheduled', 'manual')", name="trigger"),
    Index(
        "ix_webhook_attempts_due",
        "scheduled_at",
        postgresql_where=text("status = 'pending'"),
        sqlite_where=text("status = 'pending'"),
    ),
    Index("ix_webhook_attempts_endpoint", "merchant_id", "endpoint_id", "id"),
    Index("ix_webhook_attempts_event", "merchant_id", "endpoint_id", "event_id", "attempt"),
)

# Imports of customers and balances (CLI or API): progress and figures.
imports = Table(
    "imports",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("source", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("file_bytes", BigInteger, nullable=False),
    Column("rows_total", BigInteger, nullable=False, server_default="0"),
    Column("rows_done", BigInteger, nullable=False, server_default="0"),
    Column("rows_failed", BigInteger, nullable=False, server_default="0"),
    Column("rows_already_applied", BigInteger, nullable=False, server_default="0"),
    Column("customers_created", BigInteger, nullable=False, server_default="0"),
    Column("customers_updated", BigInteger, nullable=False, server_default="0"),
    Column("points_moved_minor", BigInteger, nullable=False, server_default="0"),
    # The first errors as a JSON list of {line, column, message, code}, and how many.
    Column("errors", Text, nullable=False, server_default="[]"),
    Column("errors_total", BigInteger, nullable=False, server_default="0"),
    # Rows up to this line are applied: a resumed job starts after it.
    Column("checkpoint_line", BigInteger, nullable=False, server_default="1"),
    # The process running it holds it until then (renewed while it works).
    Column("locked_until", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    CheckConstraint(
        "status IN ('validating', 'running', 'succeeded', 'failed')", name="status_known"
    ),
    Index(
        "ix_imports_unfinished",
        "locked_until",
        postgresql_where=text("status IN ('validating', 'running')"),
        sqlite_where=text("status IN ('validating', 'running')"),
    ),
)

# An API import's body, in chunks, so that any process can finish the job.
import_chunks = Table(
    "import_chunks",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("import_id", Uuid, nullable=False),
    Column("number", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("merchant_id", "import_id", "number"),
    ForeignKeyConstraint(
        ["merchant_id", "import_id"], ["imports.merchant_id", "imports.id"], ondelete="CASCADE"
    ),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("key", String(255), nullable=False),
    # SHA-256 over method, path, query and canonical body.
    Column("request_fingerprint", String(64), nullable=False),
    Column("response_status", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "key"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# How points are earned: one rule per type (purchase, and one per action).
earn_rules = Table(
    "earn_rules",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("type", String(32), nullable=False),
    # Fixed points (an action's reward; a purchase's bonus per order).
    Column("points_minor", BigInteger, nullable=False),
    Column("active", Boolean, nullable=False),
    # Purchase: points per currency unit in hundredths, rounding, minimum, hold.
    Column("points_per_currency_unit_minor", BigInteger, nullable=True),
    Column("rounding", String(8), nullable=True),
    Column("min_order_total_minor", BigInteger, nullable=True),
    Column("pending_days", Integer, nullable=True),
    # Referral: what the referred customer gets (points_minor is the referrer's).
    Column("referee_points_minor", BigInteger, nullable=True),
    # At most max_per_customer rewards per customer (per period_days, or ever).
    Column("max_per_customer", Integer, nullable=True),
    Column("period_days", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
    UniqueConstraint("merchant_id", "type"),
    CheckConstraint("points_minor >= 0", name="points_not_negative"),
)

# Orders sent by the shop (each once: unique per merchant), with what they earned.
orders = Table(
    "orders",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # JSON list of the discount codes applied.
    Column("discount_codes", Text, nullable=False),
    # SHA-256 of the order's content: the same order_id with other content is a conflict.
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(24), nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("points_earned_minor", BigInteger, nullable=False),
    # What refunds debited from the balance (not what they took off the hold).
    Column("points_removed_minor", BigInteger, nullable=False),
    # The points the refunds so far stand for, in total (removed, cancelled, shortfall).
    Column("refund_points_minor", BigInteger, nullable=False, server_default="0"),
    # Where the points went: a hold (pending) or a ledger entry.
    Column("pending_id", Uuid, nullable=True),
    Column("transaction_id", Uuid, nullable=True),
    Column("earn_rule_id", Uuid, nullable=True),
    # Why it earned nothing (no_rule, inactive_rule, below_minimum, customer_status...).
    Column("not_earned_reason", String(32), nullable=True),
    Column("placed_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    UniqueConstraint("merchant_id", "order_id"),
    CheckConstraint("total_minor >= 0", name="total_not_negative"),
    CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor", name="refund_within"),
    Index("ix_orders_customer", "merchant_id", "customer_id", "placed_at"),
)

order_refunds = Table(
    "order_refunds",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("order_row_id", Uuid, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    # Points taken back: from the balance (a ledger debit), from a hold, and
    # what the customer had already spent (never taken below zero).
    Column("points_removed_minor", BigInteger, nullable=False),
    Column("points_cancelled_minor", BigInteger, nullable=False),
    Column("shortfall_minor", BigInteger, nullable=False),
    Column("transaction_id", Uuid, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "order_row_id"], ["orders.merchant_id", "orders.id"]),
    Index("ix_order_refunds_order", "merchant_id", "order_row_id"),
)

# Every rewarded customer action (limits count them; birthdays once a year).
customer_actions = Table(
    "customer_actions",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("customer_id", Uuid, nullable=False),
    Column("action", String(32), nullable=False),
    Column("earn_rule_id", Uuid, nullable=False),
    Column("points_minor", BigInteger, nullable=False),
    Column("transaction_id", Uuid, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id", "customer_id"], ["customers.merchant_id", "customers.id"]),
    Index("ix_customer_actions_customer", "merchant_id", "customer_id", "action", "created_at"),
)

# Every configuration change (rewards, earn rules, tiers, settings, keys,
# webhook endpoints, users) and who made it.
config_changes = Table(
    "config_changes",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("id", Uuid, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("subject_type", String(32), nullable=False),
    Column("subject_id", String(64), nullable=True),
    Column("action", String(32), nullable=False),
    # What changed, in words (field names and new values; never a secret).
    Column("summary", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "id"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
)

# Per merchant, UTC day and metric: what was counted, written in the same
# transaction as what it counts (the dashboard reads these, never the entries).
# metric: 'entry:<kind>' (credits in plus, debits in minus), 'members'
# (enrolled in plus, erased in minus), 'pending' (held in plus, released,
# cancelled or reduced in minus). A writer adds to one of a few shard rows.
daily_rollups = Table(
    "daily_rollups",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    Column("day", Date, nullable=False),
    Column("metric", String(48), nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("plus_minor", BigInteger, nullable=False),
    Column("minus_minor", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    PrimaryKeyConstraint("merchant_id", "day", "metric", "shard"),
    ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
)

# A signed-in staff member's session (the cookie holds the merchant and a secret).
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("merchant_id", Uuid, nullable=False),
    # SHA-256 of the cookie's secret part: a copy of the table opens no session.
    Column("token_hash", String(64), nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("merchant_id", "token_hash"),
    ForeignKeyConstraint(["merchant_id", "user_id"], ["users.merchant_id", "users.id"]),
    Index("ix_admin_sessions_user", "merchant_id", "user_id"),
)

# Failed sign-ins by email, known or not (the throttle tells nothing about accounts).
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("email", String(254), nullable=False),
    Column("id", Uuid, nullable=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("email", "id"),
    Index("ix_login_attempts_email_at", "email", "attempted_at"),
)

# Secrets the instance generated for itself (the admin's signing key when
# LOYALTY_SECRET_KEY is not set).
instance_secrets = Table(
    "instance_secrets",
    metadata,
    Column("name", String(64), nullable=False),
    Column("value", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("name"),
)
