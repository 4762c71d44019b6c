"""Rate limits across ``loyalty serve`` processes: one budget per key through Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.server import cli_json, running_server

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "memory"])
def test_processes_share_one_budget_through_redis(
    fresh_database_url: str, tmp_path: Path, shared: bool
) -> None:
    """Two `loyalty serve` processes, requests alternating between them: with Redis
    they share the key's budget; with in-memory counts each process has its own."""
    merchant = cli_json(fresh_database_url, "merchants", "create", "Limited shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all",
        "--rate-limit", "20/minute",
    )  # fmt: skip
    prefix = f"loyalty_test_{uuid.uuid4().hex[:12]}"
    environment = {"LOYALTY_REDIS_URL": REDIS_URL, "LOYALTY_REDIS_PREFIX": prefix}
    extra = environment if shared else None
    try:
        with (
            running_server(fresh_database_url, tmp_path, extra_environment=extra) as first,
            running_server(fresh_database_url, tmp_path, extra_environment=extra) as second,
        ):
            statuses = asyncio.run(_burst([first, second], key["token"], 60))
        allowed = statuses.count(200)
        print(
            f"\n2 processes, {'Redis' if shared else 'in-memory counts'}, 20/minute: "
            f"{allowed} of 60 allowed, {statuses.count(429)} answered 429"
        )
        assert (allowed, statuses.count(429)) == ((20, 40) if shared else (40, 20))
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for name in client.scan_iter(f"{prefix}*"):
            client.delete(name)
        client.close()


async def _burst(base_urls: list[str], token: str, count: int) -> list[int]:
    """``count`` requests, alternating between the servers, a few at a time."""
    headers = {"Authorization": f"Bearer {token}"}
    clients = [httpx.AsyncClient(base_url=url, headers=headers) for url in base_urls]
    try:
        responses = await asyncio.gather(
            *(clients[i % len(clients)].get("/api/v1/rewards") for i in range(count))
        )
    finally:
        for client in clients:
            await client.aclose()
    return [response.status_code for response in responses]
