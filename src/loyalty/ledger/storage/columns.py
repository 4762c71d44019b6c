"""Each row class's columns with their kind, derived once from the class's types.

Both stores use it: Postgres to cast the arrays it sends (``uuid[]``,
``int8[]``...), SQLite to convert values to and from the forms SQLAlchemy
stores there (UUIDs as 32 hex characters, datetimes as naive UTC text,
booleans as 0/1).
"""

from __future__ import annotations

import types
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from loyalty.ledger.engine.rows import columns

Kind = Literal["uuid", "int", "text", "bool", "timestamp"]
_KINDS: dict[type[Any], Kind] = {
    uuid.UUID: "uuid",
    int: "int",
    str: "text",
    bool: "bool",
    datetime: "timestamp",
}
POSTGRES_TYPES: dict[Kind, str] = {
    "uuid": "uuid",
    "int": "int8",
    "text": "text",
    "bool": "bool",
    "timestamp": "timestamptz",
}


def _kind(annotation: Any) -> Kind:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner)
    return _KINDS[annotation]


_kinds: dict[tuple[type[Any], tuple[str, ...] | None], tuple[Kind, ...]] = {}
_writers: dict[tuple[type[Any], tuple[str, ...] | None], tuple[Callable[[Any], Any], ...]] = {}
_readers: dict[tuple[type[Any], tuple[str, ...] | None], tuple[Callable[[Any], Any], ...]] = {}


def kinds(row_class: type[Any], names: tuple[str, ...] | None = None) -> tuple[Kind, ...]:
    """The kind of each of the class's columns (or of ``names``), in order."""
    found = _kinds.get((row_class, names))
    if found is None:
        hints = typing.get_type_hints(row_class)
        found = tuple(_kind(hints[name]) for name in (names or columns(row_class)))
        _kinds[(row_class, names)] = found
    return found


def select_list(row_class: type[Any], alias: str) -> str:
    """``alias.column, ...`` over the class's columns, in order (both stores' SELECTs)."""
    return ", ".join(f"{alias}.{column}" for column in columns(row_class))


def sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _to_sqlite(kind: Kind) -> Callable[[Any], Any]:
    if kind == "uuid":
        return lambda value: None if value is None else value.hex
    if kind == "timestamp":
        return lambda value: None if value is None else sqlite_time(value)
    if kind == "bool":
        return lambda value: None if value is None else int(value)
    return lambda value: value


def _from_sqlite(kind: Kind) -> Callable[[Any], Any]:
    if kind == "uuid":
        return lambda value: None if value is None else uuid.UUID(value)
    if kind == "timestamp":
        return lambda value: (
            None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)
        )
    if kind == "bool":
        return lambda value: None if value is None else bool(value)
    return lambda value: value


def sqlite_writers(
    row_class: type[Any], names: tuple[str, ...] | None = None
) -> tuple[Callable[[Any], Any], ...]:
    found = _writers.get((row_class, names))
    if found is None:
        found = _writers[(row_class, names)] = tuple(
            _to_sqlite(kind) for kind in kinds(row_class, names)
        )
    return found


def sqlite_readers(
    row_class: type[Any], names: tuple[str, ...] | None = None
) -> tuple[Callable[[Any], Any], ...]:
    found = _readers.get((row_class, names))
    if found is None:
        found = _readers[(row_class, names)] = tuple(
            _from_sqlite(kind) for kind in kinds(row_class, names)
        )
    return found


def to_sqlite(row: Any, names: tuple[str, ...] | None = None) -> list[Any]:
    """A row's values (or those of ``names``) as SQLite stores them."""
    row_class = type(row)
    wanted = names or columns(row_class)
    return [
        write(getattr(row, name))
        for write, name in zip(sqlite_writers(row_class, names), wanted, strict=True)
    ]


def from_sqlite(row_class: type[Any], values: typing.Sequence[Any]) -> list[Any]:
    """SQLite's values of the class's columns, as the class holds them."""
    return [read(value) for read, value in zip(sqlite_readers(row_class), values, strict=True)]
