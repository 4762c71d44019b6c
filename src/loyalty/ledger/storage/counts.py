"""The one check of what a batch wrote, shared by every store."""

from __future__ import annotations

from collections.abc import Mapping

from loyalty.errors import invariant
from loyalty.ledger.engine.changes import Changes


def check_counts(changes: Changes, written: Mapping[str, int]) -> None:
    """Every write touched exactly the rows it names (a balance whose sequence moved
    meanwhile, a revert of a reward no longer active... would fail here)."""
    expected = changes.expected_counts()
    invariant(set(written) == set(expected), "a store reports every write's count")
    for name, count in expected.items():
        invariant(written[name] == count, f"{name}: wrote {written[name]} rows of {count}")
