"""The configuration changes as the admin and the API read them, and the words
a change is summarised in.

A summary names the fields changed and their new values
(``name="Free shipping", points_cost=500``); a field whose name says it holds
a secret, a token or a password is never shown, only named.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty import cursors
from loyalty.audit import repository
from loyalty.errors import ValidationFailedError

PAGE_LIMIT_DEFAULT = 20
PAGE_LIMIT_MAX = 100
# A value is cut after this many characters, a whole summary after SUMMARY_CHARS_MAX.
VALUE_CHARS_MAX = 200
SUMMARY_CHARS_MAX = 2000
ELLIPSIS = "…"
# Fields never shown in a summary (only their name, with HIDDEN).
SECRET_WORDS = ("secret", "token", "password")
HIDDEN = "[hidden]"
_CURSOR_KIND = "c"


class ConfigChange(msgspec.Struct, frozen=True):
    """One change of the programme's configuration, by ``actor``."""

    id: uuid.UUID
    actor: str
    subject_type: str
    subject_id: str | None
    action: str
    summary: str
    created_at: datetime


class ConfigChangePage(msgspec.Struct, frozen=True):
    """Newest first; ``next_cursor`` fetches the older ones."""

    data: list[ConfigChange]
    next_cursor: str | None = None


def _view(row: Any) -> ConfigChange:
    return ConfigChange(
        id=row.id,
        actor=row.actor,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        action=row.action,
        summary=row.summary,
        created_at=row.created_at,
    )


def encode_cursor(change_id: uuid.UUID) -> str:
    return cursors.encode_cursor(change_id, _CURSOR_KIND)


def decode_cursor(cursor: str) -> uuid.UUID:
    return uuid.UUID(cursors.cursor_value(cursor, _CURSOR_KIND, uuid.UUID))


async def list_changes(
    connection: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    limit: int = PAGE_LIMIT_DEFAULT,
    cursor: str | None = None,
    subject_type: str | None = None,
) -> ConfigChangePage:
    """The merchant's configuration changes, newest first, a page at a time."""
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ValidationFailedError.for_field(
            "limit", f"must be between 1 and {PAGE_LIMIT_MAX}", location="query"
        )
    before = decode_cursor(cursor) if cursor else None
    rows = await repository.list_changes(
        connection, merchant_id, limit=limit + 1, before_id=before, subject_type=subject_type
    )
    page = [_view(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].id) if len(rows) > limit else None
    return ConfigChangePage(data=page, next_cursor=next_cursor)


# --- summaries ---------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)] + ELLIPSIS


def _render(value: object) -> str:
    """One value, readable: strings quoted, numbers as numbers, null, true, false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(_cut(value, VALUE_CHARS_MAX)).decode()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        pairs = (f"{_render(str(key))}: {_render(item)}" for key, item in value.items())
        return _cut("{" + ", ".join(pairs) + "}", VALUE_CHARS_MAX)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return _cut("[" + ", ".join(_render(item) for item in items) + "]", VALUE_CHARS_MAX)
    try:
        text = msgspec.json.encode(msgspec.to_builtins(value)).decode()
    except (TypeError, msgspec.EncodeError):
        text = str(value)
    return _cut(text, VALUE_CHARS_MAX)


def is_secret(field: str) -> bool:
    lowered = field.lower()
    return any(word in lowered for word in SECRET_WORDS)


def describe(values: Mapping[str, object]) -> str:
    """``name="Free shipping", points_cost=500``: the fields in order, their new values.

    A field named like a secret, a token or a password is named, never shown;
    a long value is cut, and so is a long summary."""
    parts = [
        f"{field}={HIDDEN if is_secret(field) else _render(value)}"
        for field, value in values.items()
    ]
    return _cut(", ".join(parts), SUMMARY_CHARS_MAX)


def changed(before: object, after: object, fields: Iterable[str]) -> dict[str, object]:
    """The ``fields`` whose value differs between two views, with the new value."""
    return {
        field: getattr(after, field)
        for field in fields
        if getattr(before, field) != getattr(after, field)
    }


def present(view: object, fields: Iterable[str]) -> dict[str, object]:
    """The ``fields`` of a new object that have a value (null ones are left out)."""
    return {field: getattr(view, field) for field in fields if getattr(view, field) is not None}
