"""The customer search's prefix ranges and parameters (no database)."""

from __future__ import annotations

import pytest

from loyalty.customers.list_repository import Search
from loyalty.customers.listing import parse_search, prefix_end
from loyalty.errors import ValidationFailedError

WORDS = [
    "", "a", "ab", "abc", "abd", "ab\x7f", "ab\uffff", "ab\U0010ffff", "ac", "b", "ada@x.com",
    "ada", "adb", "ad", "ada_", "ada%", "\ud7ff", "\ue000", "é", "émile", "f", "\U0010ffff",
    "\U0010ffffa", "z\U0010ffff", "{",
]  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("a", "b"),
        ("ada", "adb"),
        ("ada@", "ada" + chr(ord("@") + 1)),
        ("a_", "a`"),
        ("a%", "a&"),
        ("z", "{"),
        ("é", "ê"),
        ("a\uffff", "a\U00010000"),
        ("a\ud7ff", "a\ue000"),  # surrogates are skipped: UTF-8 cannot hold them
        ("a\U0010ffff", "b"),
        ("\U0010ffff\U0010ffff", None),
    ],
)
def test_prefix_end(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end


@pytest.mark.parametrize("prefix", ["a", "ab", "ad", "ada", "é", "\U0010ffff", "z", "ab\uffff"])
def test_the_range_holds_exactly_the_strings_with_the_prefix(prefix: str) -> None:
    end = prefix_end(prefix)
    for word in WORDS:
        in_range = word >= prefix and (end is None or word < end)
        assert in_range == word.startswith(prefix), (prefix, word)
        # UTF-8 byte order (Postgres "C", SQLite's default) agrees with code points.
        encoded = word.encode()
        in_bytes = encoded >= prefix.encode() and (end is None or encoded < end.encode())
        assert in_bytes == in_range, (prefix, word)


def test_search_is_trimmed_and_folded() -> None:
    assert parse_search("  ADA  ") == Search(exact="ADA", prefix="ada", prefix_end="adb")
    assert parse_search("Émile") == Search(exact="Émile", prefix="émile", prefix_end="émilf")
    assert parse_search("   ") is None
    assert parse_search("") is None
    assert parse_search(None) is None


@pytest.mark.parametrize("term", ["a\x00b", "a\x01", "a\x7fb", "a" * 256])
def test_bad_search_terms_name_the_field(term: str) -> None:
    with pytest.raises(ValidationFailedError) as raised:
        parse_search(term)
    assert raised.value.details == [
        {"field": "search", "location": "query", "message": raised.value.details[0]["message"]}
    ]
