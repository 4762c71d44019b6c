"""Apply the Alembic migrations (the same ones on SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from loyalty.db.engine import async_url

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = async_url(database_url)
    return config


def upgrade_to_head(database_url: str) -> None:
    """Migrate to the newest schema; safe to call on every start (a no-op when current)."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)
