"""The schema can be distributed by merchant (Citus) without a redesign.

Read from a fresh Postgres database migrated to head (the migrations, not the
models): every table carries ``merchant_id`` in its primary key, in every
unique constraint and unique index, and in every foreign key to another
distributed table (matched to the other side's ``merchant_id``); or it is
one of the declared reference tables. ``docs/scaling.md`` gives the Citus
commands that follow from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.support.postgres import migrated_connection

DISTRIBUTION_COLUMN = "merchant_id"
# Small tables every node needs whole (create_reference_table); never joined to
# two merchants' rows. login_attempts holds a day of failed sign-ins at most,
# keyed by email before any merchant is known.
REFERENCE_TABLES = frozenset({"merchants", "instance_secrets", "login_attempts"})
# Tables of the tooling, left on the coordinator.
LOCAL_TABLES = frozenset({"alembic_version"})


@dataclass
class TableShape:
    columns: dict[int, str] = field(default_factory=dict)
    primary_key: list[str] = field(default_factory=list)
    # (name, columns) of every unique constraint and unique index
    unique: list[tuple[str, list[str]]] = field(default_factory=list)
    # (name, local columns, referenced table, referenced columns)
    foreign_keys: list[tuple[str, list[str], str, list[str]]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def schema() -> AsyncIterator[dict[str, TableShape]]:
    async with migrated_connection("loyalty_schema") as connection:
        yield await _read_schema(connection)


async def _read_schema(connection: asyncpg.Connection) -> dict[str, TableShape]:
    tables: dict[str, TableShape] = {}
    oids: dict[int, str] = {}
    for row in await connection.fetch(
        "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
    ):
        tables[row["relname"]] = TableShape()
        oids[row["oid"]] = row["relname"]
    for row in await connection.fetch(
        "SELECT attrelid, attnum, attname FROM pg_attribute "
        "WHERE attnum > 0 AND NOT attisdropped AND attrelid = ANY($1::oid[])",
        list(oids),
    ):
        tables[oids[row["attrelid"]]].columns[row["attnum"]] = row["attname"]

    def names(table: str, numbers: list[int]) -> list[str]:
        return [tables[table].columns[number] for number in numbers]

    for row in await connection.fetch(
        "SELECT conrelid, conname, contype::text AS contype, conkey, confrelid, confkey "
        "FROM pg_constraint "
        "WHERE conrelid = ANY($1::oid[]) AND contype IN ('p', 'u', 'f')",
        list(oids),
    ):
        table = oids[row["conrelid"]]
        shape = tables[table]
        columns = names(table, list(row["conkey"]))
        if row["contype"] == "p":
            shape.primary_key = columns
        elif row["contype"] == "u":
            shape.unique.append((row["conname"], columns))
        else:
            referenced = oids[row["confrelid"]]
            shape.foreign_keys.append(
                (row["conname"], columns, referenced, names(referenced, list(row["confkey"])))
            )
    # Unique indexes that back no constraint (partial ones included).
    for row in await connection.fetch(
        "SELECT i.indrelid, c.relname, i.indkey::int2[] AS keys FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indisunique AND NOT i.indisprimary AND i.indrelid = ANY($1::oid[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
        list(oids),
    ):
        table = oids[row["indrelid"]]
        # 0 stands for an expression: such an index names no plain column there.
        columns = [tables[table].columns.get(number, "<expression>") for number in row["keys"]]
        tables[table].unique.append((row["relname"], columns))
    return tables


def distribution_problems(tables: dict[str, TableShape]) -> list[str]:
    """Every way a table breaks the rules (empty: distributable by merchant)."""
    problems: list[str] = []
    for table, shape in sorted(tables.items()):
        if table in LOCAL_TABLES:
            continue
        if table in REFERENCE_TABLES:
            for name, _columns, referenced, _ in shape.foreign_keys:
                if referenced not in REFERENCE_TABLES:
                    problems.append(
                        f"{table}: reference table with foreign key {name} to distributed "
                        f"table {referenced}"
                    )
            continue
        if DISTRIBUTION_COLUMN not in shape.columns.values():
            problems.append(f"{table}: no {DISTRIBUTION_COLUMN} column and not a reference table")
            continue
        if DISTRIBUTION_COLUMN not in shape.primary_key:
            problems.append(f"{table}: primary key {shape.primary_key} lacks {DISTRIBUTION_COLUMN}")
        for name, columns in shape.unique:
            if DISTRIBUTION_COLUMN not in columns:
                problems.append(f"{table}: unique {name} {columns} lacks {DISTRIBUTION_COLUMN}")
        for name, columns, referenced, referenced_columns in shape.foreign_keys:
            if referenced in REFERENCE_TABLES:
                continue
            pairs = dict(zip(columns, referenced_columns, strict=True))
            if pairs.get(DISTRIBUTION_COLUMN) != DISTRIBUTION_COLUMN:
                problems.append(
                    f"{table}: foreign key {name} {columns} -> {referenced}"
                    f"{referenced_columns} does not match {DISTRIBUTION_COLUMN} to "
                    f"{DISTRIBUTION_COLUMN}"
                )
    return problems


async def test_every_table_is_distributable_by_merchant(schema: dict[str, TableShape]) -> None:
    assert len(schema) > 20, sorted(schema)  # the whole schema was read
    assert distribution_problems(schema) == []


async def test_the_reference_tables_exist_and_stay_few(schema: dict[str, TableShape]) -> None:
    assert set(schema) >= REFERENCE_TABLES
    distributed = set(schema) - REFERENCE_TABLES - LOCAL_TABLES
    assert all(DISTRIBUTION_COLUMN in schema[t].columns.values() for t in distributed)


def test_the_check_finds_what_breaks_the_rules() -> None:
    """The rules themselves: a table of each kind of mistake is reported."""
    ok = TableShape(columns={1: "merchant_id", 2: "id"}, primary_key=["merchant_id", "id"])
    tables = {
        "merchants": TableShape(columns={1: "id"}, primary_key=["id"]),
        "good": ok,
        "no_column": TableShape(columns={1: "id"}, primary_key=["id"]),
        "bad_key": TableShape(columns={1: "merchant_id", 2: "id"}, primary_key=["id"]),
        "bad_unique": TableShape(
            columns={1: "merchant_id", 2: "id", 3: "code"},
            primary_key=["merchant_id", "id"],
            unique=[("uq_code", ["code"])],
        ),
        "bad_foreign_key": TableShape(
            columns={1: "merchant_id", 2: "id", 3: "good_id"},
            primary_key=["merchant_id", "id"],
            foreign_keys=[("fk_good", ["good_id"], "good", ["id"])],
        ),
        "crossed_foreign_key": TableShape(
            columns={1: "merchant_id", 2: "id", 3: "other"},
            primary_key=["merchant_id", "id"],
            foreign_keys=[("fk_cross", ["other", "merchant_id"], "good", ["merchant_id", "id"])],
        ),
        "fine_foreign_key": TableShape(
            columns={1: "merchant_id", 2: "id", 3: "good_id"},
            primary_key=["merchant_id", "id"],
            foreign_keys=[
                ("fk_m", ["merchant_id"], "merchants", ["id"]),
                ("fk_good", ["merchant_id", "good_id"], "good", ["merchant_id", "id"]),
            ],
        ),
    }
    problems = distribution_problems(tables)
    assert [p.split(":")[0] for p in problems] == [
        "bad_foreign_key",
        "bad_key",
        "bad_unique",
        "crossed_foreign_key",
        "no_column",
    ]
