"""Moments as people write them in files and query strings: a date, or an RFC 3339
timestamp with its offset."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def parse_moment(value: str) -> date | datetime:
    """``YYYY-MM-DD`` as a date, or RFC 3339 (its offset required; fractions past
    microseconds dropped) as an aware datetime in UTC. ValueError otherwise."""
    if _DATE.fullmatch(value):
        return date.fromisoformat(value)
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise ValueError(value)
    day_part, time_part, fraction, offset = match.groups()
    fraction = f".{fraction[:6]}" if fraction else ""
    offset = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{day_part}T{time_part}{fraction}{offset}").astimezone(UTC)
