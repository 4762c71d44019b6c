"""Importing customers and balances from CSV (IMPORT.md)."""
