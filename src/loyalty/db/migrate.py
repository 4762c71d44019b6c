"""Apply the Alembic migrations (the same ones on SQLite and Postgres).

Every command migrates on first use; a database already at ``HEAD_REVISION``
is recognised with one driver-level read, without importing Alembic or
SQLAlchemy (they cost most of a short command's time).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Alembic is imported only when a migration runs.
    from alembic.config import Config

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"
# The newest migration's revision (a test checks it against the migrations).
HEAD_REVISION = "0015"


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    from loyalty.db.engine import async_url

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = async_url(database_url)
    return config


def _sqlite_path(database_url: str) -> str | None:
    prefix = "sqlite:///"
    if not database_url.startswith(prefix):
        return None
    return database_url[len(prefix) :].split("?", 1)[0]


def current_revision(database_url: str) -> str | None:
    """The database's migration revision (None: none, or not known cheaply)."""
    path = _sqlite_path(database_url)
    if path is not None:
        if path in ("", ":memory:") or not Path(path).exists():
            return None
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else str(row[0])
    if database_url.startswith(("postgresql://", "postgres://")):
        return asyncio.run(_postgres_revision(database_url))
    return None


async def _postgres_revision(database_url: str) -> str | None:
    import asyncpg

    try:
        connection = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError):
        return None  # let the migration say what is wrong
    try:
        value = await connection.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.PostgresError:
        return None
    finally:
        await connection.close()
    return None if value is None else str(value)


def upgrade_to_head(database_url: str) -> None:
    """Migrate to the newest schema; safe to call on every start (a no-op when current)."""
    if current_revision(database_url) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)
