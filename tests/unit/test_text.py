from __future__ import annotations

from loyalty.text import clean_text, strip_html


def test_tags_stripped_entities_decoded_trimmed() -> None:
    assert strip_html("  <b>Bonus</b> &amp; more  ") == "Bonus & more"
    assert strip_html("<script>alert(1)</script>Hi") == "Hi"
    assert strip_html("a < b") == "a < b"
    assert strip_html("plain") == "plain"


def test_blank_after_stripping_uses_default() -> None:
    assert clean_text("<p> </p>", "Default") == "Default"
    assert clean_text("   ", "Default") == "Default"
    assert clean_text(None, "Default") == "Default"
    assert clean_text("Hello", "Default") == "Hello"
