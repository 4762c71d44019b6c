"""Identifiers: time-ordered UUIDs (version 7) so new rows land at the end of indexes."""

from __future__ import annotations

import os
import time
import uuid

_last = 0


def new_id() -> uuid.UUID:
    """Return a UUIDv7: 48 bits of Unix milliseconds, then random bits.

    Within a process ids are strictly increasing (RFC 9562's monotonic
    method: inside one millisecond the next id is the previous one plus one),
    so the events of one transaction keep their order.
    """
    global _last
    milliseconds = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (milliseconds & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random_bits >> 68) << 64 & (0xFFF << 64)
    value |= 0b10 << 62  # variant
    value |= random_bits & ((1 << 62) - 1)
    if value <= _last:
        value = _increment(_last)
    _last = value
    return uuid.UUID(int=value)


def _increment(previous: int) -> int:
    """The next id after ``previous``, keeping the version and variant bits."""
    # Counter bits: 12 after the version, 62 after the variant.
    rand_a = (previous >> 64) & 0xFFF
    rand_b = previous & ((1 << 62) - 1)
    timestamp = previous >> 80
    rand_b += 1
    if rand_b >> 62:
        rand_b = 0
        rand_a += 1
        if rand_a >> 12:
            rand_a = 0
            timestamp += 1
    return (timestamp << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b


def uuid7_floor(milliseconds: int) -> uuid.UUID:
    """The smallest UUIDv7 of a Unix millisecond: ``id < uuid7_floor(t)`` finds rows
    created before ``t`` on a primary key."""
    return uuid.UUID(int=((milliseconds & ((1 << 48) - 1)) << 80) | (0x7 << 76))
