"""Hot paths on the driver: Postgres reads straight on asyncpg (prepared
statements, no ORM layer), rows viewed like SQLAlchemy rows."""

from __future__ import annotations

from typing import Any

from loyalty.db.engine import Database


class RecordView:
    """Attribute access over an asyncpg Record, like a SQLAlchemy Row."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError as error:
            raise AttributeError(name) from error


async def fetch_row_postgres(database: Database, sql: str, *arguments: Any) -> RecordView | None:
    """One row from the driver-level pool (Postgres only)."""
    async with database.raw_connection() as connection:
        record = await connection.fetchrow(sql, *arguments)
    return None if record is None else RecordView(record)
