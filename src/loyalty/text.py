"""Cleaning of customer-facing text: tags stripped, entities decoded, trimmed."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from loyalty.errors import ValidationFailedError

DESCRIPTION_CHARS_MAX = 255
INTERNAL_NOTE_CHARS_MAX = 500

_SKIPPED_ELEMENTS = frozenset({"script", "style"})
# C0 control characters other than tab, line feed and carriage return (NUL
# cannot even be stored by Postgres).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_characters(text: str | None, field: str) -> None:
    """Refuse control characters in free text (422 naming the field)."""
    if text is not None and _CONTROL_CHARACTERS.search(text):
        raise ValidationFailedError.for_field(field, "must not contain control characters")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_ELEMENTS:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_ELEMENTS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Remove tags (and script/style contents), decode entities, trim whitespace."""
    if "<" not in text and "&" not in text:
        return text.strip()
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return html.unescape("".join(parser.parts)).strip()


def clean_text(text: str | None, default: str | None = None) -> str | None:
    """Strip a customer-facing text; empty after stripping gives ``default``."""
    if text is None:
        return default
    cleaned = strip_html(text)
    return cleaned if cleaned else default


def clean_note(text: str | None) -> str | None:
    """Staff-only notes are stored as sent, trimmed; blank means none."""
    if text is None:
        return None
    cleaned = text.strip()
    return cleaned or None


def check_length(value: str | None, field: str, maximum: int) -> None:
    """Text limits are checked on the text as sent, and reject (never truncate)."""
    if value is not None and len(value) > maximum:
        raise ValidationFailedError.for_field(field, f"must be at most {maximum} characters")
