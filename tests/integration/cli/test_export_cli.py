"""``loyalty export customers|transactions``: CSV to a file or to stdout."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from loyalty.auth.tokens import token_prefix
from loyalty.cli import app
from loyalty.exports import service
from tests.support.tenant import Tenant

UNKNOWN_MERCHANT = "01a20000-0000-7000-8000-000000000000"


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    return CliRunner()


def parse(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return [dict(zip(header, row, strict=True)) for row in reader]


def names_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def run(cli: CliRunner, *args: str) -> Result:
    # The CLI runs its own event loop, so it runs in a thread here.
    return await asyncio.to_thread(cli.invoke, app, ["export", *args])


async def test_customers_to_a_file(
    cli: CliRunner, tenant: Tenant, unique_id: str, tmp_path: Path
) -> None:
    await tenant.enrol(f"{unique_id}-a", first_name="=HYPERLINK()", email=f"{unique_id}@x.io")
    await tenant.enrol(f"{unique_id}-b")
    assert (await tenant.adjust(f"{unique_id}-a", 120)).status_code == 201
    target = tmp_path / "customers.csv"

    result = await run(cli, "customers", "--merchant", str(tenant.merchant_id), "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "exported 2 customers" in result.stderr
    assert names_in(tmp_path) == ["customers.csv"]  # no leftovers
    text = target.read_bytes().decode()
    assert text.startswith(",".join(service.CUSTOMER_COLUMNS) + "\r\n")
    rows = parse(text)
    assert [row["customer_id"] for row in rows] == [f"{unique_id}-a", f"{unique_id}-b"]
    assert rows[0]["first_name"] == "'=HYPERLINK()"
    assert rows[0]["email"] == f"{unique_id}@x.io"
    assert rows[0]["points_balance"] == rows[0]["lifetime_points"] == "120"
    # The same as the download.
    response = await tenant.get("/api/v1/exports/customers.csv")
    assert response.content == target.read_bytes()


async def test_a_file_is_replaced_whole(
    cli: CliRunner, tenant: Tenant, unique_id: str, tmp_path: Path
) -> None:
    target = tmp_path / "customers.csv"
    target.write_text("old content that is longer than the new one\n" * 100)
    await tenant.enrol(unique_id)
    result = await run(cli, "customers", "--merchant", str(tenant.merchant_id), "-o", str(target))
    assert result.exit_code == 0, result.output
    assert [row["customer_id"] for row in parse(target.read_bytes().decode())] == [unique_id]


async def test_transactions_to_stdout_in_chunks(
    cli: CliRunner, tenant: Tenant, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "CHUNK_ROWS", 2)
    await tenant.enrol(unique_id)
    ids = []
    for points in (10, 20, -5, 7, 1):
        response = await tenant.adjust(unique_id, points, description=f"move {points}")
        assert response.status_code == 201, response.text
        ids.append(response.json()["data"]["transaction_id"])

    result = await run(cli, "transactions", "--merchant", str(tenant.merchant_id))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    rows = parse(result.stdout_bytes.decode())
    assert list(rows[0]) == list(service.TRANSACTION_COLUMNS)
    assert [row["transaction_id"] for row in rows] == ids
    assert [row["points"] for row in rows] == ["10", "20", "-5", "7", "1"]
    assert [row["points_balance"] for row in rows] == ["10", "30", "25", "32", "33"]
    assert {row["customer_id"] for row in rows} == {unique_id}
    assert {row["actor"] for row in rows} == {f"api_key:{token_prefix(tenant.token)}"}

    today = rows[0]["created_at"][:10]
    result = await run(
        cli,
        "transactions",
        "--merchant", str(tenant.merchant_id),
        "--since", today,
        "--until", today,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [row["transaction_id"] for row in parse(result.stdout_bytes.decode())] == ids
    result = await run(
        cli, "transactions", "--merchant", str(tenant.merchant_id), "--until", "2000-01-01"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (",".join(service.TRANSACTION_COLUMNS) + "\r\n").encode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["customers", "--merchant", "not-a-uuid"], "merchant_not_found"),
        (["customers", "--merchant", UNKNOWN_MERCHANT], "merchant_not_found"),
        (["transactions", "--merchant", UNKNOWN_MERCHANT], "merchant_not_found"),
        (["transactions", "--since", "2026-02-30"], "Invalid --since"),
        (["transactions", "--until", "tomorrow"], "Invalid --until"),
        (["transactions", "--since", "2026-03-01", "--until", "2026-02-01"], "Invalid --until"),
    ],
)
async def test_errors_exit_1_and_write_nothing(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, args: list[str], message: str
) -> None:
    if "--merchant" not in args:
        args = [*args, "--merchant", str(tenant.merchant_id)]
    target = tmp_path / "out.csv"
    result = await run(cli, *args, "--output", str(target))
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())  # as the console wrapped it
    assert result.stdout == ""
    assert names_in(tmp_path) == []


@pytest.mark.parametrize(
    ("output", "message"),
    [("missing/out.csv", "No such file or directory"), ("/dev/full", "No space left on device")],
)
async def test_an_unwritable_output_is_a_clear_error(
    cli: CliRunner, tenant: Tenant, tmp_path: Path, output: str, message: str
) -> None:
    await tenant.enrol("someone")
    target = tmp_path / output  # an absolute output stays as it is
    result = await run(cli, "customers", "--merchant", str(tenant.merchant_id), "-o", str(target))
    assert result.exit_code == 1
    assert f"cannot write {target}: {message}" in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "command", [["export"], ["export", "customers"], ["export", "transactions"]]
)
def test_export_commands_have_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    assert "<str>" not in result.stdout
