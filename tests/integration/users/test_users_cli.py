"""``loyalty users``: staff accounts with argon2 passwords, never taken as arguments."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from loyalty.cli import app
from loyalty.db.tables import users
from loyalty.users.service import password_matches
from tests.support.tenant import Tenant

PASSWORD = "correct horse battery"


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setenv("LOYALTY_LOG_LEVEL", "warning")
    return CliRunner()


async def invoke(cli: CliRunner, *args: str, stdin: str | None = None) -> Any:
    return await asyncio.to_thread(cli.invoke, app, list(args), input=stdin)


async def create(
    cli: CliRunner, tenant: Tenant, email: str, *extra: str, password: str = PASSWORD
) -> Any:
    return await invoke(
        cli,
        "users", "create", "--merchant", str(tenant.merchant_id), "--email", email,
        "--password-stdin", "--json", *extra,
        stdin=password + "\n",
    )  # fmt: skip


async def stored(tenant: Tenant, email: str) -> Any:
    async with tenant.database.read() as connection:
        return (
            await connection.execute(
                select(users).where(
                    users.c.merchant_id == tenant.merchant_id, users.c.email == email
                )
            )
        ).one()


async def test_a_user_is_created_with_an_argon2_hash(
    cli: CliRunner, tenant: Tenant, unique_id: str
) -> None:
    email = f"Owner-{unique_id}@Example.com"
    result = await create(cli, tenant, email)
    assert result.exit_code == 0, result.output
    user = json.loads(result.stdout)
    assert set(user) >= {"id", "email", "role", "merchant_id", "created_at"}
    assert user["email"] == email.lower()
    assert user["role"] == "admin"
    assert user["merchant_id"] == str(tenant.merchant_id)
    row = await stored(tenant, email.lower())
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert password_matches(row.password_hash, PASSWORD)
    assert not password_matches(row.password_hash, PASSWORD + "!")


async def test_the_password_is_asked_for_twice_without_stdin(
    cli: CliRunner, tenant: Tenant, unique_id: str
) -> None:
    args = ("users", "create", "--merchant", str(tenant.merchant_id), "--email",
            f"agent-{unique_id}@example.com", "--role", "support", "--json")  # fmt: skip
    result = await invoke(cli, *args, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert json.loads(result.stdout.splitlines()[-1])["role"] == "support"


@pytest.mark.parametrize(
    ("email", "extra", "password", "code", "field"),
    [
        ("not-an-email", (), PASSWORD, "validation_error", "email"),
        ("ok@example.com", ("--role", "owner"), PASSWORD, "validation_error", "role"),
        ("ok@example.com", (), "short", "validation_error", "password"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    cli: CliRunner,
    tenant: Tenant,
    email: str,
    extra: tuple[str, ...],
    password: str,
    code: str,
    field: str,
) -> None:
    result = await create(cli, tenant, email, *extra, password=password)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code
    assert error["details"][0]["field"] == field
    listed = await invoke(cli, "users", "list", "--merchant", str(tenant.merchant_id), "--json")
    assert json.loads(listed.stdout)["data"] == []


async def test_emails_are_unique_per_merchant_and_users_are_listed_and_disabled(
    cli: CliRunner, tenant: Tenant, other_tenant: Tenant, unique_id: str
) -> None:
    email = f"staff-{unique_id}@example.com"
    assert (await create(cli, tenant, email)).exit_code == 0
    again = await create(cli, tenant, email.upper())
    assert again.exit_code == 1
    assert json.loads(again.stdout)["error"]["code"] == "user_email_taken"
    # Another merchant may have a user with the same email.
    assert (await create(cli, other_tenant, email)).exit_code == 0

    listed = await invoke(cli, "users", "list", "--merchant", str(tenant.merchant_id), "--json")
    data = json.loads(listed.stdout)["data"]
    assert [(user["email"], user["disabled_at"]) for user in data] == [(email, None)]

    args = ("users", "disable", email, "--merchant", str(tenant.merchant_id), "--json")
    disabled = await invoke(cli, *args)
    assert disabled.exit_code == 0, disabled.output
    assert json.loads(disabled.stdout)["disabled_at"] is not None
    assert (await stored(tenant, email)).disabled_at is not None
    assert (await stored(other_tenant, email)).disabled_at is None
    missing = await invoke(
        cli, "users", "disable", "nobody@example.com", "--merchant", str(tenant.merchant_id),
        "--json",
    )  # fmt: skip
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"]["code"] == "user_not_found"


async def test_an_unknown_merchant(cli: CliRunner, tenant: Tenant) -> None:
    result = await invoke(
        cli, "users", "list", "--merchant", "01a23526-86f1-77ae-ac3a-6ecfdd6fea0d", "--json"
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "merchant_not_found"
