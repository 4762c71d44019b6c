"""Rows in bulk on the driver: thousands of rows of one table in one executemany,
without SQLAlchemy's per-value processing (an import writes them by the thousand)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


def _sqlite_value(value: Any) -> Any:
    """A value as SQLite stores it (the forms SQLAlchemy's types write)."""
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


async def insert_many(
    connection: AsyncConnection, table: str, rows: Sequence[dict[str, Any]], on_conflict: str = ""
) -> None:
    """Many rows in one driver-level executemany, without SQLAlchemy's per-value
    processing (an import writes thousands at a time). Every row has the same keys."""
    names = list(rows[0])
    if connection.dialect.name == "sqlite":
        marks = ", ".join("?" * len(names))
        parameters = [tuple(_sqlite_value(row[name]) for name in names) for row in rows]
    else:
        marks = ", ".join(f"${n}" for n in range(1, len(names) + 1))
        parameters = [tuple(row[name] for name in names) for row in rows]
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}) {on_conflict}"
    await connection.exec_driver_sql(sql, parameters)
