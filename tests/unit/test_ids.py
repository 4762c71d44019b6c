"""UUIDv7 identifiers: versioned, time-ordered, strictly increasing within a process."""

from __future__ import annotations

import itertools
import uuid

from loyalty import ids


def test_ids_are_version_7_and_strictly_increasing() -> None:
    made = [ids.new_id() for _ in range(20_000)]
    assert all(identifier.version == 7 for identifier in made)
    assert all(identifier.variant == uuid.RFC_4122 for identifier in made)
    assert all(a.int < b.int for a, b in itertools.pairwise(made))


def test_the_counter_carries_into_the_next_field() -> None:
    previous = uuid.UUID("01900000-0000-7fff-bfff-ffffffffffff").int
    following = uuid.UUID(int=ids._increment(previous))
    assert following.version == 7
    assert following.variant == uuid.RFC_4122
    assert following.int > previous
    assert str(following) == "01900000-0001-7000-8000-000000000000"
