"""Database access: schema, engine and transactions for SQLite and Postgres."""
