"""Metrics of real processes: ``loyalty serve --workers 2`` reports the sum over its
workers (whichever answers the scrape) and a new start counts from zero; ``loyalty
worker --metrics-port`` serves its own, behind the token when one is set."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from benchmarks.__main__ import free_port
from prometheus_client.parser import text_string_to_metric_families

from loyalty.metrics import HttpRecorder
from tests.support.postgres import postgres_admin, postgres_url_for
from tests.support.server import environment, running_server

pytestmark = pytest.mark.slow

HEALTHZ = "/healthz"
REQUESTS = 120


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    name = f"loyalty_metrics_{uuid.uuid4().hex[:12]}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url_for(name)
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def requests_counted(text: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "loyalty_http_requests"
        for sample in family.samples
        if sample.name == "loyalty_http_requests_total" and sample.labels["route"] == route
    )


async def scrapes(base_url: str, count: int) -> list[float]:
    """``count`` scrapes, each on a new connection (so either worker may answer)."""
    counted = []
    for _ in range(count):
        async with httpx.AsyncClient(base_url=base_url) as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            counted.append(requests_counted(response.text, HEALTHZ))
    return counted


async def load(base_url: str, count: int) -> None:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:
        responses = await asyncio.gather(*(client.get(HEALTHZ) for _ in range(count)))
    assert all(response.status_code == 200 for response in responses)


def worker_files(directory: Path) -> set[str]:
    """The pids with counters in the run's metrics directory."""
    return {
        name.rsplit("_", 1)[1].removesuffix(".db")
        for run in directory.glob("loyalty-metrics-*")
        for name in os.listdir(run)
        if name.startswith("counter_")
    }


async def test_serve_with_two_workers_reports_their_sum(postgres_url: str, tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # serve makes its metrics directory under TMPDIR: here, where the test can see it.
    extra = {"TMPDIR": str(temporary)}
    with running_server(postgres_url, tmp_path, workers=2, extra_environment=extra) as base_url:
        assert (await scrapes(base_url, 1)) == [0]
        await load(base_url, REQUESTS)
        # A worker adds its requests to the shared figures within a second.
        await asyncio.sleep(HttpRecorder.FLUSH_SECONDS + 0.5)
        counted = await scrapes(base_url, 8)
        # Both workers served requests, and every scrape, whichever worker answered
        # it, counts them all.
        assert len(worker_files(temporary)) == 2
        assert counted == [REQUESTS] * 8, counted
    # Removed at exit.
    assert list(temporary.glob("loyalty-metrics-*")) == []
    with running_server(postgres_url, tmp_path, workers=2, extra_environment=extra) as base_url:
        # A new start counts from zero.
        assert (await scrapes(base_url, 4)) == [0] * 4
    print(f"\nserve --workers 2: {REQUESTS} requests, every scrape counted {counted[0]:g}")


def wait_for_metrics(url: str, token: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the worker exited"
        try:
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if response.status_code == 200 and 'job="points_maintenance"' in response.text:
                return response.text
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the worker's metrics did not come up")


def test_worker_serves_its_own_metrics(postgres_url: str, tmp_path: Path) -> None:
    port = free_port()
    token = uuid.uuid4().hex
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "loyalty", "worker", "--interval-seconds", "3600",
            "--metrics-port", str(port),
        ],
        env={**environment(postgres_url), "LOYALTY_METRICS_TOKEN": token},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        text = wait_for_metrics(url, token, process)
        assert 'loyalty_jobs_runs_total{job="points_maintenance",outcome="ok"} 1.0' in text
        assert "loyalty_webhook_backlog" in text
        assert "loyalty_webhook_deliveries_total" in text
        assert httpx.get(url, timeout=2).status_code == 401
        wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=2)
        assert wrong.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert process.returncode == 0
