"""The command line answers at once: importing it, and any --help, loads no database
driver, SQLAlchemy, Alembic or web framework (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("litestar", "sqlalchemy", "sqlalchemy.ext.asyncio", "alembic", "asyncpg", "aiosqlite")


def loaded_after(code: str) -> list[str]:
    probe = (
        f"import sys\n{code}\n"
        f"import json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_server_stack() -> None:
    assert loaded_after("import loyalty.cli") == []


@pytest.mark.parametrize(
    "argv", [[], ["keys"], ["keys", "create"], ["merchants", "create"], ["serve"], ["worker"]]
)
def test_help_loads_no_server_stack(argv: list[str]) -> None:
    code = (
        "from loyalty.cli import app\n"
        "try:\n"
        f"    app({[*argv, '--help']!r})\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert loaded_after(code) == []
