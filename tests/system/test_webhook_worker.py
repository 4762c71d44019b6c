"""Webhook delivery by real processes: ``loyalty serve`` delivering itself when it
runs the scheduler, and a ``loyalty worker`` killed with SIGKILL mid-delivery
(the attempt is made again by the next worker; nothing is lost)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from tests.support.receiver import Answer, Received, running_receiver
from tests.support.server import cli_json, environment, running_server

pytestmark = pytest.mark.slow

ALLOWED = {"LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}


def wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def start_worker(database_url: str, directory: Path, name: str) -> subprocess.Popen[bytes]:
    log = (directory / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "loyalty", "worker", "--interval-seconds", "3600"],
        env={
            **environment(database_url),
            **ALLOWED,
            "LOYALTY_WEBHOOK_TIMEOUT_SECONDS": "3",
        },
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def test_serve_delivers_when_it_runs_the_scheduler(
    fresh_database_url: str, tmp_path: Path
) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    # The embedded default runs the scheduler in-process (auto); Postgres when told to.
    scheduler = "auto" if fresh_database_url.startswith("sqlite") else "on"
    extra = {**ALLOWED, "LOYALTY_SCHEDULER": scheduler}
    with (
        running_receiver() as receiver,
        running_server(fresh_database_url, tmp_path, extra_environment=extra) as base_url,
    ):
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            created = await client.post("/api/v1/webhooks", json={"url": receiver.url()})
            secret = created.json()["data"]["secret"]
            started = time.monotonic()
            await client.post("/api/v1/public/customers", json={"customer_id": "c1"})
            wait_for(lambda: len(receiver.requests) == 1, 10)
            # Woken by the commit, not by a poll.
            assert time.monotonic() - started < 2
            event = Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)
            assert event["type"] == "customer.created"


async def test_a_worker_killed_mid_delivery_loses_nothing(
    fresh_database_url: str, tmp_path: Path
) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    first_arrived = threading.Event()

    def answer(request: Received) -> Answer:
        if not first_arrived.is_set():
            first_arrived.set()
            return Answer(200, delay_seconds=2)  # the worker dies before this answer
        return Answer(200)

    extra = {**ALLOWED, "LOYALTY_SCHEDULER": "off"}
    with (
        running_receiver() as receiver,
        running_server(fresh_database_url, tmp_path, extra_environment=extra) as base_url,
    ):
        receiver.answer = answer
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            created = await client.post(
                "/api/v1/webhooks",
                json={"url": receiver.url(), "event_types": ["customer.created"]},
            )
            endpoint_id = created.json()["data"]["id"]
            await client.post("/api/v1/public/customers", json={"customer_id": "c1"})
            worker = start_worker(fresh_database_url, tmp_path, "worker-1")
            try:
                assert first_arrived.wait(30), "the first worker never delivered"
                os.kill(worker.pid, signal.SIGKILL)
            finally:
                worker.wait(10)
            log = await client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries")
            [attempt] = log.json()["data"]
            assert attempt["status"] == "pending"  # claimed by the dead worker, not lost
            second = start_worker(fresh_database_url, tmp_path, "worker-2")
            try:
                # Made again once the dead worker's claim lapses (timeout + margin).
                wait_for(lambda: len(receiver.requests) == 2, 30)
                ids = receiver.ids()
                assert ids[0] == ids[1]

                async def succeeded() -> bool:
                    log = await client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries")
                    return [a["status"] for a in log.json()["data"]] == ["succeeded"]

                deadline = time.monotonic() + 10
                while not await succeeded():
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(20)
            assert second.returncode == 0
