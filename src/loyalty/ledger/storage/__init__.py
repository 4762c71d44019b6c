"""Where the ledger engine's batches are read and written: Postgres, SQLite, memory."""
