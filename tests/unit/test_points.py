from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.points import (
    OPERATION_POINTS_MAX,
    PointsFormatError,
    format_points,
    parse_points,
)


def test_integers_are_exact_minor_units() -> None:
    assert parse_points(100, 0) == 10_000
    assert parse_points(-5, 0) == -500


def test_decimals_follow_the_programme() -> None:
    assert parse_points(1.5, 1) == 150
    assert parse_points(0.01, 2) == 1
    with pytest.raises(PointsFormatError, match="whole number"):
        parse_points(1.5, 0)
    with pytest.raises(PointsFormatError, match="at most 1 decimal"):
        parse_points(1.25, 1)
    with pytest.raises(PointsFormatError, match="at most 2 decimal"):
        parse_points(1.005, 2)


def test_float_noise_is_rejected_not_rounded() -> None:
    with pytest.raises(PointsFormatError):
        parse_points(0.1 + 0.2, 2)  # 0.30000000000000004


def test_limits_and_non_finite() -> None:
    with pytest.raises(PointsFormatError):
        parse_points(OPERATION_POINTS_MAX + 1, 0)
    with pytest.raises(PointsFormatError):
        parse_points(float("nan"), 2)
    with pytest.raises(PointsFormatError):
        parse_points(float("inf"), 2)
    with pytest.raises(PointsFormatError):
        parse_points(True, 0)


def test_format() -> None:
    assert format_points(10_000) == 100
    assert isinstance(format_points(10_000), int)
    assert format_points(150) == 1.5
    assert format_points(-1) == -0.01


@given(st.integers(min_value=-(10**11), max_value=10**11))
def test_round_trip_two_decimals(minor: int) -> None:
    wire = format_points(minor)
    if abs(minor) <= OPERATION_POINTS_MAX * 100:
        assert parse_points(wire, 2) == minor
    assert Decimal(repr(wire)) * 100 == minor
