"""The admin's Import & export page (ADMIN.md, "Import and export"; IMPORT.md): a CSV
uploaded and checked whole (the report: line, column, message), started, followed
(the progress fragment htmx polls), and the exports downloaded; the same import job
and export files as the API's."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import html
import io
import re
import uuid

import httpx
import pytest
from litestar import Litestar

from loyalty.exports.service import CUSTOMER_COLUMNS, TRANSACTION_COLUMNS
from loyalty.imports import jobs
from loyalty.scheduling import JobContext
from tests.support.browser import AdminClient, ClientFactory, Shop
from tests.support.clock import Clock
from tests.support.ledger import TRANSACTIONS, ledger_count
from tests.support.tenant import Tenant, create_key

DATA = "/admin/data"
IMPORTS = "/admin/data/imports"
JOB_PATH = re.compile(r"^/admin/data/imports/([0-9a-f-]{36})(?:\?|$)")


@pytest.fixture
async def api(shop: Shop, client: httpx.AsyncClient) -> Tenant:
    """The shop's API, to check what the pages did."""
    token = await create_key(shop.database, shop.merchant_id)
    return Tenant(shop.merchant_id, token, client, shop.database)


async def upload(
    admin: AdminClient, body: bytes, name: str = "members.csv", csrf: str | None = None
) -> httpx.Response:
    return await admin.client.post(
        IMPORTS,
        data={"_csrf": csrf or await admin.csrf(DATA)},
        files={"file": (name, body, "text/csv")},
    )


async def post(admin: AdminClient, path: str) -> httpx.Response:
    return await admin.post(path, {"_csrf": await admin.csrf(DATA)})


def job_id_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    match = JOB_PATH.match(response.headers["location"])
    assert match is not None, response.headers["location"]
    return match.group(1)


def problems(page: str) -> list[tuple[str, str, str]]:
    """The report's rows: (line, column, message)."""
    table = page[page.index('<table class="table problems">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(
        r'<td class="number">(\d+)</td>\s*<td>(?:<code>([^<]*)</code>)?</td>\s*<td>([^<]*)',
        table,
    )
    return [(line, column, html.unescape(message).strip()) for line, column, message in rows]


def figure(fragment: str, name: str) -> str:
    match = re.search(rf'data-figure="{name}">([^<]*)<', fragment)
    assert match is not None, f"no {name} in the fragment"
    return match.group(1)


async def wait_finished(admin: AdminClient, import_id: str) -> str:
    """The progress fragment once the job has finished (as htmx polls it)."""
    for _ in range(400):
        fragment = await admin.get(
            f"{IMPORTS}/{import_id}/progress", headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 200, fragment.text
        if "hx-trigger" not in fragment.text:
            return fragment.text
        await asyncio.sleep(0.05)
    raise AssertionError("the import did not finish")


def members(unique_id: str) -> bytes:
    return (
        "customer_id,email,first_name,points,description\n"
        f"{unique_id}-1,{unique_id}@example.com,Ada,100,Welcome back\n"
        f"{unique_id}-2,,Grace,40,\n"
        f"{unique_id}-1,,,-30,Correction\n"
    ).encode()


# The validation report ---------------------------------------------------------------


async def test_an_invalid_file_shows_its_report_and_writes_nothing(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    body = (
        "customer_id,email,points\n"
        f"{unique_id}-1,not-an-email,5\n"
        f"{unique_id}-2,,lots\n"
        f"{unique_id}-3,,7\n"
    ).encode()
    response = await upload(signed_in, body, name="bad <file>.csv")
    assert response.status_code == 422, response.text
    assert "Validation report: bad &lt;file&gt;.csv" in response.text
    assert "3 rows checked, 2 errors" in response.text
    assert "Nothing was imported" in response.text
    found = problems(response.text)
    assert [(line, column) for line, column, _ in found] == [("2", "email"), ("3", "points")]
    assert all(message for _, _, message in found)
    assert "Start import" not in response.text
    assert await ledger_count(api) == 0
    missing = await api.get("/api/v1/public/customers", params={"customer_id": f"{unique_id}-3"})
    assert missing.status_code == 404
    # Nothing kept: no import in the list.
    page = await signed_in.get(DATA)
    assert "No import yet." in page.text


async def test_an_unknown_column_is_reported_on_the_header_line(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    response = await upload(signed_in, f"customer_id,colour\n{unique_id},red\n".encode())
    assert response.status_code == 422
    [(line, column, message)] = problems(response.text)
    assert (line, column) == ("1", "colour")
    assert "Unknown column" in message


async def test_no_file_an_empty_file_and_a_file_too_large(
    app: Litestar, signed_in: AdminClient, api: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing = await signed_in.client.post(
        IMPORTS,
        data={"_csrf": await signed_in.csrf(DATA)},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert nothing.status_code == 422
    assert 'id="f-file-error">Choose the CSV file to import.' in nothing.text
    empty = await upload(signed_in, b"")
    assert empty.status_code == 422
    assert 'id="f-file-error">This file is empty.' in empty.text
    small = dataclasses.replace(app.state.settings, import_bytes_max=64)
    monkeypatch.setattr(app.state, "settings", small)
    large = await upload(signed_in, b"customer_id,points\n" + b"1,5\n" * 40)
    assert large.status_code == 413
    assert 'id="f-file-error">The file is larger than 64 bytes, the import limit.' in large.text
    assert "No import yet." in large.text


async def test_an_upload_without_its_csrf_token_is_refused(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    response = await upload(signed_in, members(unique_id), csrf="forged")
    assert response.status_code == 403
    assert "No import yet." in (await signed_in.get(DATA)).text


# Start and progress ----------------------------------------------------------------------


async def test_a_valid_file_waits_for_its_start_then_runs_to_the_end(
    app: Litestar, signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    uploaded = await upload(signed_in, members(unique_id))
    import_id = job_id_of(uploaded)
    page = await signed_in.get(uploaded.headers["location"])
    assert page.status_code == 200
    assert "members.csv is valid: 3 row(s) ready to import." in page.text
    assert "Awaiting start" in page.text
    assert "Start import" in page.text
    # Nothing written yet, and no process takes the upload over on its own.
    context = JobContext(api.database, app.state.settings, app.state.ledger_writer)
    await jobs.resume_abandoned(context)
    job = (await api.get(f"/api/v1/imports/{import_id}")).json()["data"]
    assert (job["status"], job["rows_total"], job["rows_done"]) == ("validating", 3, 0)
    assert await ledger_count(api) == 0

    started = await post(signed_in, f"{IMPORTS}/{import_id}/start")
    assert job_id_of(started) == import_id
    # A second click starts nothing more.
    assert job_id_of(await post(signed_in, f"{IMPORTS}/{import_id}/start")) == import_id
    fragment = await wait_finished(signed_in, import_id)
    assert "Succeeded" in fragment
    assert (figure(fragment, "rows_done"), figure(fragment, "rows_total")) == ("3", "3")
    assert figure(fragment, "customers_created") == "2"
    assert figure(fragment, "customers_updated") == "0"
    assert figure(fragment, "points_moved") == "110"
    assert figure(fragment, "rows_failed") == "0"
    assert "<html" not in fragment  # a fragment, not a page

    assert (await api.customer(f"{unique_id}-1"))["points_balance"] == 70
    assert (await api.customer(f"{unique_id}-2"))["points_balance"] == 40
    assert await ledger_count(api) == 3
    entries = await api.get(TRANSACTIONS, params={"customer_id": f"{unique_id}-1"})
    assert entries.status_code == 200, entries.text
    actors = {entry["actor"] for entry in entries.json()["data"]}
    assert actors == {f"import:{import_id}"}

    listing = await signed_in.get(DATA)
    assert f'href="{IMPORTS}/{import_id}"' in listing.text
    assert "Succeeded" in listing.text


async def test_the_same_file_again_moves_nothing_twice(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    for _ in range(2):
        import_id = job_id_of(await upload(signed_in, members(unique_id)))
        await post(signed_in, f"{IMPORTS}/{import_id}/start")
        fragment = await wait_finished(signed_in, import_id)
    assert figure(fragment, "rows_already_applied") == "3"
    assert figure(fragment, "points_moved") == "0"
    assert await ledger_count(api) == 3


async def test_a_failing_row_is_reported_with_its_line(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    body = f"customer_id,points\n{unique_id},10\n{unique_id},-50\n".encode()
    import_id = job_id_of(await upload(signed_in, body))
    await post(signed_in, f"{IMPORTS}/{import_id}/start")
    fragment = await wait_finished(signed_in, import_id)
    assert figure(fragment, "rows_failed") == "1"
    [(line, _column, message)] = problems(fragment)
    assert line == "3"
    assert message == "The customer does not have enough points for this debit."
    assert '<span class="tag">insufficient_points</span>' in fragment


async def test_the_fragment_polls_while_the_job_runs(signed_in: AdminClient, shop: Shop) -> None:
    import_id, lease = await jobs.create_job(
        shop.database, shop.merchant_id, source="cli", status="running"
    )
    await lease.update({"rows_total": 10, "rows_done": 4, "customers_created": 4})
    fragment = await signed_in.get(f"{IMPORTS}/{import_id}/progress")
    assert f'hx-get="{IMPORTS}/{import_id}/progress"' in fragment.text
    assert 'hx-trigger="every 1s"' in fragment.text
    assert "Running" in fragment.text
    assert (figure(fragment.text, "rows_done"), figure(fragment.text, "rows_total")) == ("4", "10")
    # Without scripts, the page itself says where it stands and offers a Refresh link.
    page = await signed_in.get(f"{IMPORTS}/{import_id}")
    assert "<html" in page.text
    assert f'<a href="{IMPORTS}/{import_id}">Refresh</a>' in page.text
    assert 'value="4"' in page.text
    await lease.update({"status": "succeeded", "rows_done": 10}, renew=False)
    finished = await signed_in.get(f"{IMPORTS}/{import_id}/progress")
    assert "hx-trigger" not in finished.text
    assert "Refresh" not in finished.text
    assert "Succeeded" in finished.text


async def test_an_upload_can_be_discarded(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    import_id = job_id_of(await upload(signed_in, members(unique_id)))
    discarded = await post(signed_in, f"{IMPORTS}/{import_id}/discard")
    assert discarded.status_code == 303
    assert discarded.headers["location"].startswith(f"{DATA}?")
    assert (await api.get(f"/api/v1/imports/{import_id}")).status_code == 404
    assert (await signed_in.get(f"{IMPORTS}/{import_id}")).status_code == 404
    assert await ledger_count(api) == 0


async def test_an_upload_not_started_within_an_hour_expires(
    signed_in: AdminClient, api: Tenant, unique_id: str, clock: Clock
) -> None:
    first = job_id_of(await upload(signed_in, members(unique_id)))
    second = job_id_of(await upload(signed_in, members(unique_id)))
    clock.advance(minutes=61)
    page = await signed_in.get(f"{IMPORTS}/{first}")
    assert "expired" in page.text
    assert "Start import" not in page.text
    refused = await post(signed_in, f"{IMPORTS}/{first}/start")
    assert refused.status_code == 303
    assert refused.headers["location"].startswith(f"{DATA}?")
    assert (await api.get(f"/api/v1/imports/{first}")).status_code == 404
    listing = await signed_in.get(DATA)
    assert "Expired" in listing.text
    # The next upload clears away those left behind (with their stored bodies).
    clock.advance(minutes=15)
    third = job_id_of(await upload(signed_in, members(unique_id)))
    assert (await api.get(f"/api/v1/imports/{second}")).status_code == 404
    assert (await api.get(f"/api/v1/imports/{third}")).status_code == 200
    assert await ledger_count(api) == 0


async def test_another_merchants_import_is_the_404_page(
    signed_in: AdminClient, other_tenant: Tenant
) -> None:
    response = await other_tenant.post(
        "/api/v1/imports", content=b"customer_id\nx\n", headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 202, response.text
    theirs = response.json()["data"]["id"]
    for path in ("", "/progress"):
        assert (await signed_in.get(f"{IMPORTS}/{theirs}{path}")).status_code == 404
    for action in ("/start", "/discard"):
        assert (await post(signed_in, f"{IMPORTS}/{theirs}{action}")).status_code == 404
    assert (await signed_in.get(f"{IMPORTS}/{uuid.uuid4()}")).status_code == 404
    assert (await other_tenant.get(f"/api/v1/imports/{theirs}")).status_code == 200


# Exports -----------------------------------------------------------------------------------


def rows_of(response: httpx.Response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.text)))


async def test_the_exports_download_as_csv(
    signed_in: AdminClient, api: Tenant, unique_id: str
) -> None:
    await api.enrol(unique_id, email=f"{unique_id}@example.com", first_name="=cmd")
    assert (await api.adjust(unique_id, 25, "Welcome")).status_code == 201
    customers = await signed_in.get(f"{DATA}/exports/customers.csv")
    assert customers.status_code == 200, customers.text
    assert customers.headers["content-type"].startswith("text/csv")
    assert customers.headers["content-disposition"].startswith("attachment; filename=customers-")
    header, *rows = rows_of(customers)
    assert tuple(header) == CUSTOMER_COLUMNS
    [row] = rows
    assert row[0] == unique_id
    assert row[3 - 1] == "'=cmd"  # spreadsheet-safe
    # The same file as the API's.
    assert customers.text == (await api.get("/api/v1/exports/customers.csv")).text

    transactions = await signed_in.get(f"{DATA}/exports/transactions.csv")
    assert transactions.status_code == 200
    header, *rows = rows_of(transactions)
    assert tuple(header) == TRANSACTION_COLUMNS
    assert [(row[1], row[2]) for row in rows] == [(unique_id, "25")]
    assert rows[0][-1].startswith("api_key:")
    later = await signed_in.get(
        f"{DATA}/exports/transactions.csv", params={"since": "2999-01-01", "until": ""}
    )
    assert rows_of(later) == [list(TRANSACTION_COLUMNS)]


async def test_export_dates_are_checked_next_to_their_fields(signed_in: AdminClient) -> None:
    response = await signed_in.get(
        f"{DATA}/exports/transactions.csv", params={"since": "2026-02-01", "until": "2026-01-01"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="f-export-until-error">Must be after since.' in response.text
    assert 'value="2026-02-01"' in response.text
    wrong = await signed_in.get(f"{DATA}/exports/transactions.csv", params={"since": "soon"})
    assert wrong.status_code == 422
    assert 'id="f-export-since-error"' in wrong.text


async def test_exports_need_a_session(admin_clients: ClientFactory) -> None:
    anonymous = await admin_clients()
    response = await anonymous.get(f"{DATA}/exports/customers.csv")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login"
