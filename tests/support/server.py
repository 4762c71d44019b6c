"""A real ``loyalty serve`` process and the CLI, run as scripts run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from benchmarks.__main__ import server


def environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_LOG_LEVEL": "warning",
        # Tests of the rate limits give their keys limits of their own.
        "LOYALTY_RATE_LIMIT_DEFAULT": "1000000/minute",
    }


def cli_json(database_url: str, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "loyalty", *args, "--json"],
        env=environment(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    parsed: dict[str, Any] = json.loads(completed.stdout)
    return parsed


def running_server(
    database_url: str,
    cwd: Path,
    workers: int = 1,
    log_level: str = "warning",
    extra_environment: dict[str, str] | None = None,
) -> AbstractContextManager[str]:
    """A ``loyalty serve`` process, ready, stopped (with its workers) on exit."""
    return server(database_url, workers, cwd, log_level, extra_environment)
