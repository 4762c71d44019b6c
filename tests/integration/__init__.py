"""Integration tests: the app and its services on real databases (SQLite and Postgres),
in process, one package per domain package of ``src/loyalty``."""
