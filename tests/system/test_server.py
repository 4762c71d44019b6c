"""End to end: a real ``loyalty serve`` process on a database created on first use.

Covers the README path (CLI creates merchant and key, seed 000 over HTTP) and
correctness across processes (``--workers 2``, 64 clients on one customer).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.server import cli_json, running_server

pytestmark = pytest.mark.slow


async def test_readme_path_seed_000(fresh_database_url: str, tmp_path: Path) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Yuko Shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    with running_server(fresh_database_url, tmp_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            enrolled = await client.post(
                "/api/v1/public/customers",
                json={"customer_id": "9049402769586", "email": "ada@example.com"},
            )
            assert enrolled.status_code == 201
            response = await client.post(
                "/api/v1/public/customers/transactions",
                params={"customer_id": "9049402769586"},
                json={"points": 100, "description": "Bonus points for completing a survey"},
            )
            assert response.status_code == 201
            data = response.json()["data"]
            assert data["customer_id"] == enrolled.json()["data"]["id"]
            assert (data["points"], data["type"]) == (100, "credit")
            customer = await client.get(
                "/api/v1/public/customers", params={"customer_id": "9049402769586"}
            )
            assert customer.json()["data"]["points_balance"] == 100
            assert (await client.get("/healthz")).status_code == 200


async def test_two_workers_64_clients_one_customer(fresh_database_url: str, tmp_path: Path) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Busy Shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with running_server(fresh_database_url, tmp_path, workers=2) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=60
        ) as client:
            await client.post("/api/v1/public/customers", json={"customer_id": "hot"})
            credit = await client.post(
                "/api/v1/public/customers/transactions",
                params={"customer_id": "hot"},
                json={"points": 40, "description": "start"},
            )
            assert credit.status_code == 201

            async def debit(index: int) -> httpx.Response:
                return await client.post(
                    "/api/v1/public/customers/transactions",
                    params={"customer_id": "hot"},
                    json={"points": -1, "description": f"debit {index}"},
                    headers={"Idempotency-Key": f"debit-{index}"},
                )

            responses = await asyncio.gather(*(debit(index) for index in range(64)))
            statuses = [response.status_code for response in responses]
            assert statuses.count(201) == 40, statuses
            assert statuses.count(422) == 24
            # Retrying every request with its key changes nothing.
            retries = await asyncio.gather(*(debit(index) for index in range(64)))
            assert [r.status_code for r in retries] == statuses
            assert all(r.headers.get("Idempotent-Replayed") == "true" for r in retries)

            customer = await client.get("/api/v1/public/customers", params={"customer_id": "hot"})
            assert customer.json()["data"]["points_balance"] == 0
            entries = await client.get(
                "/api/v1/public/customers/transactions",
                params={"customer_id": "hot", "limit": 100},
            )
            assert len(entries.json()["data"]) == 41
            print(
                f"\n2 workers, 64 concurrent debits of 1 against 40 points: "
                f"{statuses.count(201)} succeeded, {statuses.count(422)} insufficient_points, "
                f"final balance 0, 41 ledger entries; 64 keyed retries all replayed"
            )


async def test_two_workers_20_redemptions_with_points_for_5(
    fresh_database_url: str, tmp_path: Path
) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Busy Shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    headers = {"Authorization": f"Bearer {key['token']}"}
    with running_server(fresh_database_url, tmp_path, workers=2) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
            reward = await client.post(
                "/api/v1/rewards",
                json={"name": "$5 off", "reward_type": "fixed_discount", "points_cost": 500,
                      "reward_rule": {"discount_value": 5}},
            )  # fmt: skip
            await client.post("/api/v1/public/customers", json={"customer_id": "hot"})
            await client.post(
                "/api/v1/public/customers/transactions",
                params={"customer_id": "hot"},
                json={"points": 2500, "description": "start"},
            )
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/public/customers/rewards/redeem",
                        params={"customer_id": "hot"},
                        json={"reward_id": reward.json()["data"]["id"]},
                    )
                    for _ in range(20)
                )
            )
            statuses = [response.status_code for response in responses]
            assert statuses.count(201) == 5, statuses
            assert statuses.count(422) == 15
            codes = {r.json()["data"]["discount_code"] for r in responses if r.status_code == 201}
            assert len(codes) == 5
            page = await client.get(
                "/api/v1/public/customers/rewards/redeemable", params={"customer_id": "hot"}
            )
            data = page.json()["data"]
            assert data["points_balance"] == 0
            assert {r["discount_code"] for r in data["customer_rewards"]} == codes
            print(
                f"\n2 workers, 20 concurrent redemptions of 500 against 2500 points: "
                f"{statuses.count(201)} redeemed with 5 distinct codes, "
                f"{statuses.count(422)} insufficient_points, final balance 0"
            )


async def test_keys_never_reach_the_logs(fresh_database_url: str, tmp_path: Path) -> None:
    merchant = cli_json(fresh_database_url, "merchants", "create", "Quiet shop")
    key = cli_json(
        fresh_database_url, "keys", "create", "--merchant", merchant["id"], "--scopes", "all"
    )
    secret = key["token"].rsplit("_", 1)[1]
    forged = key["token"][:-4] + "AAAA"
    with running_server(fresh_database_url, tmp_path, log_level="debug") as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            for token in (key["token"], forged):
                headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": token}
                await client.post(
                    "/api/v1/public/customers", json={"customer_id": "c1"}, headers=headers
                )
                await client.post(
                    "/api/v1/public/customers/transactions",
                    params={"customer_id": "c1"},
                    json={"points": 5, "description": token},
                    headers=headers,
                )
    log = server_logs(tmp_path)
    assert '"event": "request"' in log  # the access log is there...
    assert secret not in log  # ...but no key, valid or forged
    assert forged[-12:] not in log


def server_logs(directory: Path) -> str:
    return "".join(path.read_text() for path in directory.glob("server-*.log"))
