"""Discount codes: ``PREFIX-XXXX-XXXX``, easy to read aloud and to type.

The alphabet leaves out characters that are mistaken for each other (0/O,
1/I/L), so a code read from a screen or a receipt is typed right. Eight
random characters of 31 give 31**8 (about 8.5e11) codes per prefix: a guessed
code is almost never someone's, and the rare collision with an existing code
is caught by the unique index on (merchant_id, discount_code) and the code
drawn again.
"""

from __future__ import annotations

import re
import secrets

from loyalty.errors import ValidationFailedError

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS = 2
GROUP_LENGTH = 4
PREFIX_LENGTH_MAX = 12
DEFAULT_PREFIX_LENGTH = 6

_PREFIX = re.compile(rf"^[A-Z0-9]{{0,{PREFIX_LENGTH_MAX}}}$")


def generate_code(prefix: str) -> str:
    groups = ["".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS)]
    return "-".join([prefix, *groups] if prefix else groups)


def normalise_prefix(value: str) -> str:
    """Upper-case letters and digits, at most 12; empty for codes without a prefix."""
    prefix = value.strip().upper()
    if not _PREFIX.match(prefix):
        raise ValidationFailedError.for_field(
            "discount_code_prefix",
            f"must be at most {PREFIX_LENGTH_MAX} letters A-Z or digits (or empty)",
        )
    return prefix


def default_prefix(merchant_name: str) -> str:
    """The shop's name, letters and digits only, cut to six characters."""
    letters = "".join(c for c in merchant_name.upper() if "A" <= c <= "Z" or "0" <= c <= "9")
    return letters[:DEFAULT_PREFIX_LENGTH]
