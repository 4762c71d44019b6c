"""The application's clock, moved by tests."""

from __future__ import annotations

from datetime import timedelta

from loyalty.db.types import set_clock_offset


class Clock:
    """The application's clock, moved by tests of time-driven rules."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)
        set_clock_offset(self.offset)
