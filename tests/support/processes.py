"""``loyalty serve`` and ``loyalty worker`` processes a test signals itself.

Unlike ``tests.support.server.running_server`` (stopped for the test on exit),
these hand back the process so a test can send SIGTERM while it is under load
and check how (and how fast) it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from benchmarks.__main__ import free_port

from tests.support.postgres import postgres_admin, postgres_url_for
from tests.support.server import environment

STARTUP_SECONDS_MAX = 60


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def terminate(self) -> float:
        """SIGTERM to the process (the uvicorn parent, as a container runtime sends it);
        returns the seconds until it exited."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)
        return time.monotonic() - started


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "loyalty", *args],
            env=env,
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def serve(
    database_url: str,
    directory: Path,
    *,
    workers: int = 2,
    extra_environment: dict[str, str] | None = None,
) -> Iterator[Started]:
    """A ready ``loyalty serve``; killed on exit if the test did not stop it."""
    port = free_port()
    log = directory / f"serve-{port}.log"
    env = {**environment(database_url), **(extra_environment or {})}
    process = _spawn(["serve", "--port", str(port), "--workers", str(workers)], env, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS_MAX
        while True:
            with suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"loyalty serve did not start; see {log}")
            time.sleep(0.2)
        yield Started(process, base_url, log)
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                _kill(process)
        _kill(process)  # its workers, if the parent went first


@contextmanager
def worker(
    database_url: str, directory: Path, name: str, extra_environment: dict[str, str] | None = None
) -> Iterator[Started]:
    """A ``loyalty worker``; killed on exit if the test did not stop it."""
    log = directory / f"{name}.log"
    env = {**environment(database_url), **(extra_environment or {})}
    process = _spawn(["worker"], env, log)
    try:
        yield Started(process, "", log)
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                _kill(process)


@asynccontextmanager
async def postgres_database(prefix: str) -> AsyncIterator[str]:
    """An empty Postgres database (``loyalty`` migrates it on first use), dropped
    afterwards; the test fails if Postgres is unreachable."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url_for(name)
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def query(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of ``sql`` on the test's database (checked behind the API's back)."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
        return rows
    finally:
        await connection.close()
