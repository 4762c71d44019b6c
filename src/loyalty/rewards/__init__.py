"""Rewards domain."""
