"""customers at scale (list, search, erasure) and imports

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 05:00:00

- ``customers.external_id`` becomes nullable: an erased customer gives its
  platform id back (NULL), so the same id can enrol again; ``status`` may be
  ``erased``.
- ``customers.first_name_search`` / ``last_name_search``: the names in lower
  case, kept by the application (the same folding on both databases), for
  the prefix search; binary collation on Postgres so a prefix is a range.
- Indexes for the customer list (newest first, by status, by balance), the
  search (platform id, email prefix, name prefixes) and the ledger export
  (entries oldest first).
- ``imports`` (one row per import, CLI or API: its progress and its figures)
  and ``import_chunks`` (an API import's body, kept in the database so that
  any process can finish the job).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loyalty.db.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_STATUSES_BEFORE = "status IN ('active', 'inactive', 'excluded', 'excluded_by_customer')"
_STATUSES = "status IN ('active', 'inactive', 'excluded', 'excluded_by_customer', 'erased')"
_BACKFILL_BATCH = 1000


def _search_type() -> sa.types.TypeEngine[str]:
    return sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")


def _backfill_search_names() -> None:
    """The lower-cased names, folded by Python (as the application writes them)."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT merchant_id, id, first_name, last_name FROM customers "
            "WHERE first_name IS NOT NULL OR last_name IS NOT NULL"
        )
    ).fetchall()
    customers = sa.table(
        "customers",
        sa.column("merchant_id", sa.Uuid()),
        sa.column("id", sa.Uuid()),
        sa.column("first_name_search", sa.String()),
        sa.column("last_name_search", sa.String()),
    )
    statement = (
        customers.update()
        .where(
            customers.c.merchant_id == sa.bindparam("m"),
            customers.c.id == sa.bindparam("i"),
        )
        .values(
            first_name_search=sa.bindparam("f"),
            last_name_search=sa.bindparam("l"),
        )
    )
    for start in range(0, len(rows), _BACKFILL_BATCH):
        chunk = rows[start : start + _BACKFILL_BATCH]
        bind.execute(
            statement,
            [
                {
                    "m": row.merchant_id,
                    "i": row.id,
                    "f": row.first_name.lower() if row.first_name else None,
                    "l": row.last_name.lower() if row.last_name else None,
                }
                for row in chunk
            ],
        )


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.alter_column("external_id", existing_type=sa.String(255), nullable=True)
        batch_op.add_column(sa.Column("first_name_search", _search_type(), nullable=True))
        batch_op.add_column(sa.Column("last_name_search", _search_type(), nullable=True))
        batch_op.drop_constraint(op.f("ck_customers_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_customers_status_known"), _STATUSES)
    _backfill_search_names()
    # The list: newest first (keyset on created_at, id), by status, by balance.
    op.create_index("ix_customers_created_at", "customers", ["merchant_id", "created_at", "id"])
    op.create_index(
        "ix_customers_status_created_at",
        "customers",
        ["merchant_id", "status", "created_at", "id"],
    )
    op.create_index(
        "ix_customer_balances_points_balance",
        "customer_balances",
        ["merchant_id", "points_balance_minor", "customer_id"],
    )
    op.create_index("ix_customer_balances_tier", "customer_balances", ["merchant_id", "tier_id"])
    # The ledger export, oldest first (keyset on created_at, id).
    op.create_index(
        "ix_ledger_entries_created_at", "ledger_entries", ["merchant_id", "created_at", "id"]
    )
    # The search: name prefixes (binary collation), email prefix (the unique
    # index serves on SQLite, whose comparisons are binary).
    op.create_index(
        "ix_customers_first_name_search", "customers", ["merchant_id", "first_name_search"]
    )
    op.create_index(
        "ix_customers_last_name_search", "customers", ["merchant_id", "last_name_search"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            'CREATE INDEX ix_customers_email_c ON customers (merchant_id, email COLLATE "C")'
        )

    op.create_table(
        "imports",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        # api | cli
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_done", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_failed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_already_applied", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("customers_created", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("customers_updated", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("points_moved_minor", sa.BigInteger(), nullable=False, server_default="0"),
        # The first errors as a JSON list of {line, column, message, code}, and how many.
        sa.Column("errors", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("errors_total", sa.BigInteger(), nullable=False, server_default="0"),
        # Rows up to this line are applied: a resumed job starts after it.
        sa.Column("checkpoint_line", sa.BigInteger(), nullable=False, server_default="1"),
        # The process running it holds it until then (renewed while it works).
        sa.Column("locked_until", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", loyalty.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id", "id", name=op.f("pk_imports")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_imports_merchant_id_merchants")
        ),
        sa.CheckConstraint(
            "status IN ('validating', 'running', 'succeeded', 'failed')",
            name=op.f("ck_imports_status_known"),
        ),
    )
    # Unfinished jobs, across merchants (a process picks up one whose holder died).
    op.create_index(
        "ix_imports_unfinished",
        "imports",
        ["locked_until"],
        postgresql_where=sa.text("status IN ('validating', 'running')"),
        sqlite_where=sa.text("status IN ('validating', 'running')"),
    )
    op.create_table(
        "import_chunks",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("import_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "merchant_id", "import_id", "number", name=op.f("pk_import_chunks")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id", "import_id"],
            ["imports.merchant_id", "imports.id"],
            ondelete="CASCADE",
            name=op.f("fk_import_chunks_merchant_id_import_id_imports"),
        ),
    )


def downgrade() -> None:
    op.drop_table("import_chunks")
    op.drop_index("ix_imports_unfinished", table_name="imports")
    op.drop_table("imports")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_customers_email_c")
    op.drop_index("ix_customers_last_name_search", table_name="customers")
    op.drop_index("ix_customers_first_name_search", table_name="customers")
    op.drop_index("ix_ledger_entries_created_at", table_name="ledger_entries")
    op.drop_index("ix_customer_balances_tier", table_name="customer_balances")
    op.drop_index("ix_customer_balances_points_balance", table_name="customer_balances")
    op.drop_index("ix_customers_status_created_at", table_name="customers")
    op.drop_index("ix_customers_created_at", table_name="customers")
    # Erased customers keep their rows (the ledger refers to them), excluded.
    op.execute(
        "UPDATE customers SET status = 'excluded', external_id = 'erased:' || id "
        "WHERE status = 'erased'"
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_customers_status_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_customers_status_known"), _STATUSES_BEFORE)
        batch_op.drop_column("last_name_search")
        batch_op.drop_column("first_name_search")
        batch_op.alter_column("external_id", existing_type=sa.String(255), nullable=False)
