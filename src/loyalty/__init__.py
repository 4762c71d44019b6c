"""Loyalty-points platform: a ledger of points, rewards and a REST API for merchants."""

__version__ = "0.1.0"
