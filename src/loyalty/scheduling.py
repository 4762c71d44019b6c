"""What a scheduled job is: the declaration each domain makes next to its code.

A domain declares its jobs as a ``JOBS`` tuple in its ``jobs.py``
(``loyalty.rewards.jobs``, ``loyalty.idempotency.jobs``…); ``loyalty.jobs``
collects them into one list and runs each when its ``every`` has passed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from loyalty.db.engine import Database
from loyalty.ledger.writer import LedgerWriter
from loyalty.settings import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use: the database, the settings and the ledger writer
    (every points movement goes through the writer)."""

    database: Database
    settings: Settings
    writer: LedgerWriter


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    # How often it runs: it runs on the scheduler's first pass after `every` has
    # passed since its last run. None: on every pass, i.e. every
    # LOYALTY_SCHEDULER_INTERVAL_SECONDS.
    every: timedelta | None
    # One run: does the work that is due and returns counts of what it did
    # (logged, and formatted into `summary`).
    run: Callable[[JobContext], Awaitable[Mapping[str, float]]]
    # What `loyalty worker` prints after a run, formatted with the counts.
    summary: str = ""
