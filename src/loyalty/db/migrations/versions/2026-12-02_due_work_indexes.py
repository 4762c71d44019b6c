"""due work indexes: birthdays and inactivity found by index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 12:00:00

- ``ix_customers_birthday``: the scheduler's birthday query finds today's
  birthdays by index, ``(<month and day of date_of_birth>, merchant_id)``
  over customers with a date of birth (the day first: SQLite, without
  statistics, may start the join from customers and still searches by
  day). The expression is the query's, on each database
  (``loyalty.ledger.repository.BIRTHDAY_KEY``): on Postgres
  ``EXTRACT(MONTH …) * 100 + EXTRACT(DAY …)`` (immutable; ``to_char`` is not
  and cannot be indexed), on SQLite ``strftime('%m-%d', …)`` (deterministic).
- ``ix_customer_balances_inactivity``: ``(merchant_id, last_activity_at)``
  over balances above zero, so an inactivity programme's idle balances are
  found by a range, not by reading all of the merchant's balances.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As loyalty.ledger.repository.BIRTHDAY_KEY (a migration does not import the
# application: it must keep meaning what it meant when written).
_BIRTHDAY_KEY = {
    "postgresql": "(EXTRACT(MONTH FROM date_of_birth) * 100 + EXTRACT(DAY FROM date_of_birth))",
    "sqlite": "strftime('%m-%d', date_of_birth)",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(
        f"CREATE INDEX ix_customers_birthday ON customers "
        f"({_BIRTHDAY_KEY[dialect]}, merchant_id) WHERE date_of_birth IS NOT NULL"
    )
    op.create_index(
        "ix_customer_balances_inactivity",
        "customer_balances",
        ["merchant_id", "last_activity_at"],
        postgresql_where=sa.text("points_balance_minor > 0"),
        sqlite_where=sa.text("points_balance_minor > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_customer_balances_inactivity", table_name="customer_balances")
    op.execute("DROP INDEX ix_customers_birthday")
