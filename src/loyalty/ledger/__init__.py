"""Ledger domain."""
