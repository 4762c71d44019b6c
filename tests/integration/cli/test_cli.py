"""The CLI contract scripts rely on (``--json`` prints one object)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

from loyalty.auth.scopes import ALL_SCOPES
from loyalty.cli import app
from loyalty.db.tables import customer_rewards
from tests.support.tenant import Tenant


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    return CliRunner()


def run_json(cli: CliRunner, *args: str, exit_code: int = 0) -> dict[str, Any]:
    result = cli.invoke(app, [*args, "--json"])
    assert result.exit_code == exit_code, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_merchant_and_key_lifecycle(cli: CliRunner) -> None:
    merchant = run_json(cli, "merchants", "create", "Yuko Shop")
    assert set(merchant) >= {"id", "name", "created_at"}
    assert merchant["name"] == "Yuko Shop"

    key = run_json(
        cli,
        "keys", "create",
        "--merchant", merchant["id"],
        "--scopes", "transactions:write,customers:read",
        "--name", "Checkout",
        "--rate-limit", "100/minute",
    )  # fmt: skip
    assert set(key) >= {"id", "prefix", "token", "scopes", "name", "rate_limit", "merchant_id"}
    assert key["token"].startswith(f"lk_{key['prefix']}_")
    assert key["scopes"] == ["customers:read", "transactions:write"]
    assert key["rate_limit"] == "100/minute"
    assert key["name"] == "Checkout"

    everything = run_json(cli, "keys", "create", "--merchant", merchant["id"], "--scopes", "all")
    assert everything["scopes"] == list(ALL_SCOPES)

    listed = run_json(cli, "keys", "list", "--merchant", merchant["id"])
    assert [item["prefix"] for item in listed["data"]] == [key["prefix"], everything["prefix"]]
    for item in listed["data"]:
        assert "token" not in item
        assert item["revoked_at"] is None

    revoked = run_json(cli, "keys", "revoke", key["prefix"])
    assert revoked["revoked_at"] is not None
    by_id = run_json(cli, "keys", "revoke", everything["id"])
    assert by_id["prefix"] == everything["prefix"]
    listed = run_json(cli, "keys", "list", "--merchant", merchant["id"])
    assert all(item["revoked_at"] for item in listed["data"])


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--scopes", "transactions:write,nope"], "validation_error"),
        (["--scopes", ""], "validation_error"),
        (["--scopes", "all", "--rate-limit", "100/day"], "validation_error"),
        (["--scopes", "all", "--rate-limit", "0/minute"], "validation_error"),
        (["--scopes", "all", "--rate-limit", "1000001/second"], "validation_error"),
    ],
)
def test_key_creation_refuses_bad_options(cli: CliRunner, args: list[str], code: str) -> None:
    merchant = run_json(cli, "merchants", "create", "Shop")
    error = run_json(cli, "keys", "create", "--merchant", merchant["id"], *args, exit_code=1)
    assert error["error"]["code"] == code


def test_unknown_merchant_and_key(cli: CliRunner) -> None:
    for merchant_id in ("not-a-uuid", "01a20000-0000-7000-8000-000000000000"):
        error = run_json(
            cli, "keys", "create", "--merchant", merchant_id, "--scopes", "all", exit_code=1
        )
        assert error["error"]["code"] == "merchant_not_found"
    error = run_json(cli, "keys", "revoke", "nosuchkey1", exit_code=1)
    assert error["error"]["code"] == "api_key_not_found"


async def test_revoked_key_stops_working_at_once(
    cli: CliRunner, tenant: Tenant, unique_id: str
) -> None:
    await tenant.enrol(unique_id)
    prefix = tenant.token.split("_")[1]
    # The CLI runs its own event loop, so it runs in a thread here.
    await asyncio.to_thread(run_json, cli, "keys", "revoke", prefix)
    response = await tenant.get("/api/v1/public/customers", params={"customer_id": unique_id})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["migrate"],
        ["worker"],
        ["merchants", "create"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["customers", "import"],
        ["export", "customers"],
        ["export", "transactions"],
        ["users", "create"],
        ["users", "list"],
        ["users", "disable"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    assert "<bool>" not in result.stdout  # no stray type markers
    assert "<str>" not in result.stdout


def test_worker_once_purges(cli: CliRunner) -> None:
    result = cli.invoke(app, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "purged" in result.stdout


async def test_worker_expires_codes_past_their_expiry(
    cli: CliRunner, tenant: Tenant, unique_id: str
) -> None:
    reward = await tenant.post(
        "/api/v1/rewards",
        json={"name": "Weekly", "reward_type": "free_shipping", "points_cost": 100,
              "reward_rule": {}, "code_validity_days": 7},
    )  # fmt: skip
    await tenant.enrol(unique_id)
    await tenant.adjust(unique_id, 100)
    redeemed = await tenant.post(
        "/api/v1/public/customers/rewards/redeem",
        params={"customer_id": unique_id},
        json={"reward_id": reward.json()["data"]["id"]},
    )
    customer_reward_id = redeemed.json()["data"]["id"]

    async def backdate(connection: AsyncConnection) -> None:
        await connection.execute(
            update(customer_rewards)
            .where(customer_rewards.c.merchant_id == tenant.merchant_id)
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )

    await tenant.database.transaction(backdate)
    result = await asyncio.to_thread(cli.invoke, app, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert re.search(r"expired [1-9]\d* customer reward", result.stdout), result.stdout
    async with tenant.database.read() as connection:
        status = await connection.scalar(
            select(customer_rewards.c.status).where(
                customer_rewards.c.merchant_id == tenant.merchant_id,
                customer_rewards.c.id == uuid.UUID(customer_reward_id),
            )
        )
    assert status == "expired"
