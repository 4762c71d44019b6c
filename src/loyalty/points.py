"""Exact points arithmetic.

Every points amount is stored and computed as an integer number of hundredths
of a point ("minor units", 1 point = 100). Programmes allow 0, 1 or 2 decimal
places; integers stay integers on the wire. Binary floats are never used for
arithmetic: a JSON number is turned into a Decimal from its shortest
round-trip text, which is the literal the client sent.
"""

from __future__ import annotations

import math
from decimal import Decimal

from loyalty.errors import ValidationFailedError

MINOR_PER_POINT = 100
# Programmes allow 0, 1 or 2 decimal places.
MAXIMUM_DECIMALS = 2
# A single movement may not exceed this many points, and no balance may grow
# past BALANCE_POINTS_MAX: limits keep every sum far inside a signed 64-bit int.
OPERATION_POINTS_MAX = 1_000_000_000
BALANCE_POINTS_MAX = 1_000_000_000_000
BALANCE_MINOR_MAX = BALANCE_POINTS_MAX * MINOR_PER_POINT


class PointsFormatError(ValueError):
    """The amount cannot be represented in the programme's precision."""


def to_decimal(value: int | float | Decimal) -> Decimal:
    if isinstance(value, bool):
        raise PointsFormatError("must be a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PointsFormatError("must be a finite number")
        return Decimal(repr(value))
    return Decimal(value)


def parse_points(value: int | float | Decimal, decimals: int) -> int:
    """Convert an amount as sent to minor units, refusing extra precision."""
    if type(value) is int and abs(value) <= OPERATION_POINTS_MAX:
        return value * MINOR_PER_POINT  # whole points (most requests): exact, no Decimal
    amount = to_decimal(value)
    if not amount.is_finite():
        raise PointsFormatError("must be a finite number")
    if abs(amount) > OPERATION_POINTS_MAX:
        raise PointsFormatError(f"must be at most {OPERATION_POINTS_MAX} in absolute value")
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > decimals:
        if decimals == 0:
            raise PointsFormatError("must be a whole number (this programme has no decimals)")
        raise PointsFormatError(f"may have at most {decimals} decimal places")
    return int(amount * MINOR_PER_POINT)


def parse_field(value: int | float | Decimal, decimals: int, field: str) -> int:
    """``parse_points`` for a request field: a refused amount is a 422 naming it."""
    try:
        return parse_points(value, decimals)
    except PointsFormatError as error:
        raise ValidationFailedError.for_field(field, str(error)) from error


def format_points(minor: int) -> float:
    """Render minor units as a JSON number: whole points as an int, else a float
    with at most two decimals. The float is only a carrier for JSON: its
    shortest representation is exactly the two-decimal value, since every
    balance is far below 15 significant digits."""
    whole, fraction = divmod(minor, MINOR_PER_POINT)
    if fraction == 0:
        return whole
    return float(Decimal(minor) / MINOR_PER_POINT)
