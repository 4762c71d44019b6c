"""``loyalty customers import``: validate whole, apply once, report in JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from loyalty.cli import app
from loyalty.db.tables import events, imports
from tests.support.ledger import check_ledger_invariants, ledger_count
from tests.support.tenant import Tenant


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setenv("LOYALTY_LOG_LEVEL", "warning")
    return CliRunner()


async def run_import(
    cli: CliRunner, tenant: Tenant, path: Path, *extra: str, exit_code: int = 0
) -> dict[str, Any]:
    args = ["customers", "import", str(path), "--merchant", str(tenant.merchant_id), "--json"]
    result = await asyncio.to_thread(cli.invoke, app, [*args, *extra])
    assert result.exit_code == exit_code, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def write(tmp_path: Path, text: str, name: str = "members.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_a_file_is_imported_once_and_a_rerun_moves_nothing(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, unique_id: str
) -> None:
    a, b, c = (f"{unique_id}-{n}" for n in range(3))
    path = write(
        tmp_path,
        "customer_id,email,first_name,last_name,points,description\n"
        f"{a},{a}@example.com,Ada,Lovelace,150,Welcome from the old programme\n"
        f"{b},,Grace,Hopper,80,\n"
        f"{c},,Alan,Turing,,\n"
        f"{a},,,,-20,Correction\n"
        f"{b},{b}@EXAMPLE.com,,,5,\n",
    )
    first = await run_import(cli, tenant, path)
    assert first["rows"] == 5
    assert first["customers_created"] == 3
    assert first["points_moved"] == 215
    assert first["rows_already_applied"] == 0
    assert first["rows_failed"] == 0
    assert first["errors"] == []
    assert set(first) >= {
        "rows", "customers_created", "customers_updated", "points_moved",
        "rows_already_applied", "rows_failed", "errors", "seconds",
    }  # fmt: skip
    ada = await tenant.customer(a)
    assert (ada["points_balance"], ada["lifetime_points"]) == (130, 150)
    assert (ada["email"], ada["first_name"], ada["last_name"]) == (
        f"{a}@example.com",
        "Ada",
        "Lovelace",
    )
    grace = await tenant.customer(b)
    assert grace["points_balance"] == 85
    assert grace["email"] == f"{b}@example.com"
    assert (await tenant.customer(c))["points_balance"] == 0
    entries = await ledger_count(tenant)
    assert entries == 4
    for customer in (a, b):
        await check_ledger_invariants(tenant, customer)
    response = await tenant.get("/api/v1/public/customers/transactions", params={"customer_id": a})
    described = [item["description"] for item in response.json()["data"]]
    assert described == ["Correction", "Welcome from the old programme"]

    again = await run_import(cli, tenant, path)
    assert again["rows_already_applied"] == 5
    assert again["points_moved"] == 0
    assert again["customers_created"] == 0
    assert again["customers_updated"] == 0
    assert await ledger_count(tenant) == entries
    assert (await tenant.customer(a))["points_balance"] == 130


async def test_an_invalid_file_writes_nothing_and_reports_lines(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, unique_id: str
) -> None:
    path = write(
        tmp_path,
        "customer_id,email,points\n"
        f"{unique_id}-1,ok@example.com,10\n"
        f"{unique_id}-2,not-an-email,1e3\n"
        f'{unique_id}-3,,"1,000"\n',
    )
    report = await run_import(cli, tenant, path, exit_code=1)
    assert report["errors_total"] == 3
    assert [(e["line"], e["column"]) for e in report["errors"]] == [
        (3, "email"),
        (3, "points"),
        (4, "points"),
    ]
    assert report["customers_created"] == 0
    assert await ledger_count(tenant) == 0
    response = await tenant.get(
        "/api/v1/public/customers", params={"customer_id": f"{unique_id}-1"}
    )
    assert response.status_code == 404


async def test_a_dry_run_validates_only(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, unique_id: str
) -> None:
    path = write(tmp_path, f"customer_id,points\n{unique_id},10\n")
    report = await run_import(cli, tenant, path, "--dry-run")
    assert report["rows"] == 1
    assert report["errors"] == []
    response = await tenant.get("/api/v1/public/customers", params={"customer_id": unique_id})
    assert response.status_code == 404


async def test_failed_rows_fail_alone(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, unique_id: str
) -> None:
    await tenant.enrol(f"{unique_id}-holder", email=f"{unique_id}@example.com")
    path = write(
        tmp_path,
        "customer_id,email,points\n"
        f"{unique_id}-1,,10\n"
        f"{unique_id}-1,,-50\n"
        f"{unique_id}-2,{unique_id}@example.com,5\n"
        f"{unique_id}-3,,7\n",
    )
    report = await run_import(cli, tenant, path, exit_code=1)
    assert report["rows_failed"] == 2
    failures = {(e["line"], e["code"]) for e in report["errors"]}
    assert failures == {(3, "insufficient_points"), (4, "customer_email_taken")}
    assert (await tenant.customer(f"{unique_id}-1"))["points_balance"] == 10
    assert (await tenant.customer(f"{unique_id}-3"))["points_balance"] == 7
    response = await tenant.get(
        "/api/v1/public/customers", params={"customer_id": f"{unique_id}-2"}
    )
    assert response.status_code == 404


async def test_profiles_update_events_and_formulas_kept_literally(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, unique_id: str
) -> None:
    await tenant.enrol(unique_id, first_name="Old", email=f"{unique_id}@example.com")
    path = write(
        tmp_path,
        "customer_id,first_name,status,date_of_birth,idempotency_key,points,expires_at\n"
        f'{unique_id},"=HYPERLINK(""http://x"")",inactive,1990-04-02,key-{unique_id},9,2099-01-01\n',
    )
    report = await run_import(cli, tenant, path)
    assert report["customers_updated"] == 1
    customer = await tenant.customer(unique_id)
    assert customer["first_name"] == '=HYPERLINK("http://x")'
    assert customer["status"] == "inactive"
    assert customer["email"] == f"{unique_id}@example.com"  # empty cell: left as is
    assert customer["date_of_birth"] == "1990-04-02"
    assert customer["points_expire_at"].startswith("2099-01-01T23:59:59")
    # The row's own key: the same movement through the API is a replay.
    replay = await tenant.adjust(
        unique_id, 9, "Imported points", headers={"Idempotency-Key": f"key-{unique_id}"}
    )
    assert replay.status_code in (200, 201, 422)
    async with tenant.database.read() as connection:
        types = (
            await connection.execute(
                select(events.c.type, func.count())
                .where(events.c.merchant_id == tenant.merchant_id)
                .group_by(events.c.type)
            )
        ).all()
        statuses = (
            await connection.execute(
                select(imports.c.status, imports.c.rows_done, imports.c.source).where(
                    imports.c.merchant_id == tenant.merchant_id
                )
            )
        ).all()
    counted = {row[0]: row[1] for row in types}
    assert counted["customer.updated"] == 1
    assert counted["transaction.created"] == 1
    assert [tuple(row) for row in statuses] == [("succeeded", 1, "cli")]


async def test_unknown_merchant_and_missing_file(
    cli: CliRunner, tenant: Tenant, tmp_path: Path
) -> None:
    path = write(tmp_path, "customer_id\n1\n")
    args = ["customers", "import", str(path), "--merchant", "0" * 32, "--json"]
    result = await asyncio.to_thread(cli.invoke, app, args)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "merchant_not_found"
    missing = [
        "customers",
        "import",
        str(tmp_path / "nope.csv"),
        "--merchant",
        str(tenant.merchant_id),
    ]
    assert (await asyncio.to_thread(cli.invoke, app, missing)).exit_code == 2
