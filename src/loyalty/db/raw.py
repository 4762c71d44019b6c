"""Hot paths on the driver: Postgres reads straight on asyncpg (prepared
statements, no ORM layer), rows viewed like SQLAlchemy rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from loyalty.db.coalesce import ReadCoalescer
from loyalty.db.engine import Database

# SQLite stores UUIDs as hex text and datetimes as naive UTC text (the forms
# SQLAlchemy uses); raw rows convert them back by column name.
_UUID_COLUMNS = frozenset({"id", "merchant_id", "customer_id", "subject_id", "tier_id"})
_DATE_COLUMNS = frozenset({"date_of_birth"})


class RecordView:
    """Attribute access over an asyncpg Record, like a SQLAlchemy Row: its values copied
    once into the instance's attributes (a customer's thirty columns are read one by
    one to build the answer; a lookup per attribute cost more than the copy)."""

    def __init__(self, record: Any) -> None:
        self.__dict__.update(record.items())


def merchant_coalescer(
    database: Database,
    name: str,
    sql: str,
    *,
    key_column: str,
    extra: tuple[Any, ...] = (),
    wrap: Callable[[Any], Any] = lambda record: record,
) -> ReadCoalescer[tuple[uuid.UUID, str]]:
    """Point reads by (merchant id, text) coalesced, on Postgres, into one run of ``sql``
    for every request waiting (``$1::uuid[]`` and ``$2::text[]`` the keys, ``extra``
    the further arguments); a record answers the key (its ``merchant_id`` and
    ``key_column``), ``wrap``ped. One per ``name`` and database."""
    coalescer = database.read_coalescers.get(name)
    if coalescer is None:

        async def fetch_many(keys: Sequence[tuple[uuid.UUID, str]]) -> dict[Any, Any]:
            async with database.raw_connection() as connection:
                records = await connection.fetch(
                    sql, [key[0] for key in keys], [key[1] for key in keys], *extra
                )
            return {(record["merchant_id"], record[key_column]): wrap(record) for record in records}

        coalescer = database.read_coalescers[name] = ReadCoalescer(fetch_many)
    return coalescer


async def fetch_row_postgres(database: Database, sql: str, *arguments: Any) -> RecordView | None:
    """One row from the driver-level pool (Postgres only)."""
    async with database.raw_connection() as connection:
        record = await connection.fetchrow(sql, *arguments)
    return None if record is None else RecordView(record)


class SQLiteRowView:
    """Attribute access over a sqlite3.Row, converting UUID and time columns."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getattr__(self, name: str) -> Any:
        try:
            value = self._row[name]
        except IndexError as error:
            raise AttributeError(name) from error
        if value is None:
            return None
        if name in _UUID_COLUMNS:
            return uuid.UUID(value)
        if name.endswith("_at"):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        if name in _DATE_COLUMNS:
            return date.fromisoformat(value)
        return value


async def fetch_row_sqlite(database: Database, sql: str, *arguments: Any) -> SQLiteRowView | None:
    """One row from the process's driver-level SQLite reader (WAL: never blocks writers)."""
    reader = database.sqlite_reader
    assert reader is not None, "Database.start() opens the reader"
    cursor = await reader.execute(sql, arguments)
    row = await cursor.fetchone()
    await cursor.close()
    return None if row is None else SQLiteRowView(row)


async def fetch_rows_sqlite(database: Database, sql: str, *arguments: Any) -> list[SQLiteRowView]:
    """Rows from the process's driver-level SQLite reader."""
    reader = database.sqlite_reader
    assert reader is not None, "Database.start() opens the reader"
    cursor = await reader.execute(sql, arguments)
    rows = await cursor.fetchall()
    await cursor.close()
    return [SQLiteRowView(row) for row in rows]
