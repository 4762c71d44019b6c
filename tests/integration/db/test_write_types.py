"""The ledger writer's record types (migration 0015) match what the writer sends.

The writer sends each table's rows as an array of records, one tuple per row in
the order of ``WRITE_TYPES``: a field added, dropped or moved on one side only
would put values in the wrong columns (two ``int8`` swapped would even pass
unnoticed), so the migrated types are read back and compared, field by field,
with the writer's order and with the types of the columns they are written to.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from loyalty.ledger.storage.postgres import WRITE_TYPES
from tests.support.postgres import migrated_connection

# The table each type's rows are written to; fields named otherwise there.
TARGETS = {
    "ledger_balance_write": "customer_balances",
    "ledger_entry_write": "ledger_entries",
    "ledger_event_write": "events",
    "ledger_key_write": "idempotency_keys",
}
# The balance's sequence the batch read (the update's guard): a last_sequence.
RENAMED = {("ledger_balance_write", "initial_sequence"): "last_sequence"}
# Strings travel as text; the insert checks a varchar column's length, as before.
VARCHAR = re.compile(r"character varying\(\d+\)")

_FIELDS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relname = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@pytest.fixture(scope="module")
async def connection() -> AsyncIterator[asyncpg.Connection]:
    async with migrated_connection("loyalty_types") as connected:
        yield connected


@pytest.mark.parametrize("type_name", sorted(WRITE_TYPES))
async def test_each_record_type_is_the_writers_fields_typed_as_their_columns(
    connection: asyncpg.Connection, type_name: str
) -> None:
    fields = [(row[0], row[1]) for row in await connection.fetch(_FIELDS, type_name)]
    assert [name for name, _ in fields] == list(WRITE_TYPES[type_name])
    columns = {row[0]: row[1] for row in await connection.fetch(_FIELDS, TARGETS[type_name])}
    for name, field_type in fields:
        column = RENAMED.get((type_name, name), name)
        expected = VARCHAR.sub("text", columns[column])
        assert field_type == expected, (type_name, name, field_type, columns[column])
