"""Webhooks and Import & export in a real browser: an endpoint added, tested and its
delivery log read (a failed attempt resent); a CSV checked, started and followed to
the end through htmx polling; the screenshots of the docs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.async_api import FilePayload, Page, expect

from loyalty.db.engine import Database
from loyalty.settings import Settings
from loyalty.webhooks.delivery import Deliverer
from tests.support.browser import PASSWORD, Shop, WatchedPage, log_in, screenshots_dir
from tests.support.receiver import Answer, Received, Receiver, running_receiver
from tests.support.tenant import Tenant, create_key

SCREENSHOTS = screenshots_dir()
TRANSACTIONS = "/api/v1/public/customers/transactions"
IMPORT_ROWS = 10_000
DELIVERY_WAIT_SECONDS = 20.0


@pytest.fixture
async def api(shop: Shop, admin_server: str) -> AsyncIterator[Tenant]:
    """The shop's merchant through the real server's API (an all-scopes key)."""
    token = await create_key(shop.database, shop.merchant_id)
    async with httpx.AsyncClient(base_url=admin_server, timeout=30) as client:
        yield Tenant(shop.merchant_id, token, client, shop.database)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def deliver_until(database: Database, settings: Settings, done: Callable[[], bool]) -> None:
    """Deliver what is due (as ``loyalty worker`` does; on SQLite the server's own
    deliverer may be first) until ``done()``."""
    await database.start()  # the deliverer claims through the driver-level pool (once)
    deliverer = Deliverer(database, settings)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DELIVERY_WAIT_SECONDS
        while not done():
            assert loop.time() < deadline, "the delivery did not happen"
            await deliverer.run_once()
            await asyncio.sleep(0.1)
    finally:
        await deliverer.stop()


async def log_rows(page: Page, *, showing: str, count: int = 1) -> Any:
    """The delivery log's rows once ``count`` of them show ``showing``, reloading
    until then: the receiver holds a request a moment before the deliverer (the
    test's or, on SQLite, the server's own) records the attempt's result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELIVERY_WAIT_SECONDS
    while True:
        await page.reload()
        rows = page.locator("table.log tbody tr")
        if await rows.filter(has_text=showing).count() >= count:
            return rows
        assert loop.time() < deadline, f"the delivery log never showed {count} x {showing!r}"
        await asyncio.sleep(0.2)


async def test_add_an_endpoint_send_a_test_and_read_its_delivery_log(
    page: WatchedPage,
    shop: Shop,
    receiver: Receiver,
    database: Database,
    settings: Settings,
) -> None:
    statuses = iter([503])

    def answer(_request: Received) -> Answer:
        return Answer(status=next(statuses, 200), body=b"ok")

    receiver.answer = answer
    browser = page.page
    await log_in(browser, shop.admin_email, PASSWORD)
    await (
        browser.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    )
    await expect(browser.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()

    url = receiver.url("/hooks/loyalty")
    await browser.get_by_label("Endpoint URL").fill(url)
    await browser.get_by_label("Description").fill("Warehouse sync")
    await browser.get_by_label("Only the types checked below").check()
    await browser.get_by_label("webhook.test").check()
    await browser.get_by_label("transaction.created").check()
    await browser.get_by_role("button", name="Add endpoint").click()
    await expect(browser.get_by_role("heading", name="Endpoint added")).to_be_visible()
    await expect(browser.get_by_label(re.compile("^Signing secret"))).to_have_value(
        re.compile(r"^whsec_")
    )
    await browser.get_by_role("link", name="Go to the endpoint").click()
    await expect(browser.get_by_role("heading", name=url, level=1)).to_be_visible()
    await expect(browser.get_by_text("Nothing sent to this endpoint yet.")).to_be_visible()

    # A test event: the receiver is down at first (503).
    await browser.get_by_role("button", name="Send test event").click()
    await expect(browser.get_by_role("status")).to_contain_text("Test event")
    await deliver_until(database, settings, lambda: len(receiver.requests) >= 1)
    rows = await log_rows(browser, showing="HTTP 503")
    failed = rows.filter(has_text="HTTP 503")
    await expect(failed).to_have_count(1)
    await expect(failed).to_contain_text("webhook.test")
    await expect(failed).to_contain_text("Failed")
    await expect(failed).to_contain_text("Scheduled")

    # Resend it by hand (its retry is still scheduled): a new attempt, which succeeds.
    await failed.get_by_role("button", name=re.compile("^Resend")).click()
    await expect(browser.get_by_role("status")).to_contain_text("is being sent again (attempt")
    await deliver_until(database, settings, lambda: len(receiver.requests) >= 2)
    rows = await log_rows(browser, showing="HTTP 200")
    resent = rows.filter(has_text="Manual")
    await expect(resent).to_contain_text("HTTP 200")
    await expect(resent).to_contain_text("Succeeded")
    assert len(set(receiver.ids())) == 1  # the same webhook-id: the same event

    # A second test event goes straight through.
    await browser.get_by_role("button", name="Send test event").click()
    await deliver_until(database, settings, lambda: len(set(receiver.ids())) >= 2)
    rows = await log_rows(browser, showing="HTTP 200", count=2)
    await expect(rows.first).to_contain_text("HTTP 200")

    # The list says how it stands; the edit page keeps the chosen types.
    await browser.get_by_role("link", name="Webhooks").first.click()
    listed = browser.locator("table tbody tr").filter(has_text=url)
    await expect(listed).to_contain_text("Enabled")
    await expect(listed).to_contain_text("Succeeded")
    await listed.get_by_role("link", name=url).click()
    await browser.get_by_role("link", name="Edit").click()
    await expect(browser.get_by_label("webhook.test")).to_be_checked()
    await expect(browser.get_by_label("order.placed")).not_to_be_checked()
    await browser.get_by_role("link", name="Cancel").click()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await browser.set_viewport_size({"width": 1280, "height": 900})
    await browser.reload()
    await browser.screenshot(path=str(SCREENSHOTS / "webhooks.png"), full_page=True)


def csv_file(name: str, body: bytes) -> FilePayload:
    return {"name": name, "mimeType": "text/csv", "buffer": body}


def members_file(tag: str, rows: int) -> bytes:
    lines = ["customer_id,email,first_name,points,description"]
    for number in range(1, rows + 1):
        lines.append(
            f"{tag}-{number},{tag}.{number}@example.com,Member {number},{number % 50 + 1},"
        )
    return ("\n".join(lines) + "\n").encode()


async def test_upload_check_start_and_follow_an_import(
    page: WatchedPage, shop: Shop, api: Tenant
) -> None:
    page.expect_status(422)
    tag = f"m{shop.merchant_id.hex[-12:]}"
    browser = page.page
    await log_in(browser, shop.admin_email, PASSWORD)
    await (
        browser.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Import & export")
        .click()
    )
    await expect(browser.get_by_role("heading", name="Import & export", level=1)).to_be_visible()

    # An invalid file: the report, nothing imported.
    bad = f"customer_id,email,points\n{tag}-x,not-an-email,5\n".encode()
    await browser.get_by_label("CSV file").set_input_files(files=[csv_file("bad.csv", bad)])
    await browser.get_by_role("button", name="Check file").click()
    await expect(browser.get_by_role("heading", name="Validation report: bad.csv")).to_be_visible()
    problem = browser.locator("table.problems tbody tr")
    await expect(problem).to_have_count(1)
    await expect(problem).to_contain_text("2")
    await expect(problem).to_contain_text("email")
    assert (await api.get(TRANSACTIONS, params={"customer_id": f"{tag}-x"})).status_code == 404

    # A valid file: checked, then started, then followed through htmx polling.
    members = csv_file("members.csv", members_file(tag, IMPORT_ROWS))
    await browser.get_by_label("CSV file").set_input_files(files=[members])
    await browser.get_by_role("button", name="Check file").click()
    await expect(browser.get_by_role("status")).to_have_text(
        "members.csv is valid: 10,000 row(s) ready to import."
    )
    await expect(browser.get_by_text("Awaiting start")).to_be_visible()
    await browser.get_by_role("button", name="Start import").click()
    progress = browser.locator("#import-progress")
    # The job runs: the panel polls (the page was not reloaded past this point).
    await expect(progress).to_have_attribute("hx-trigger", "every 1s")
    await browser.set_viewport_size({"width": 1280, "height": 900})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = False
    rows_done = progress.locator('[data-figure="rows_done"]')
    for _ in range(600):
        text = await rows_done.text_content()
        if (
            not shot
            and text not in (None, "0")
            and await progress.get_attribute("hx-trigger") is not None
        ):
            await browser.screenshot(path=str(SCREENSHOTS / "import.png"), full_page=True)
            shot = True
        if await progress.get_attribute("hx-trigger") is None:
            break
        await asyncio.sleep(0.1)
    await expect(progress.locator(".import-status")).to_have_text("Succeeded", timeout=60_000)
    await expect(progress).not_to_have_attribute("hx-trigger", "every 1s")
    await expect(rows_done).to_have_text("10,000")
    await expect(progress.locator('[data-figure="customers_created"]')).to_have_text("10,000")
    await expect(progress.locator('[data-figure="rows_failed"]')).to_have_text("0")
    if not shot:  # it ran faster than a glimpse: the finished figures
        await browser.screenshot(path=str(SCREENSHOTS / "import.png"), full_page=True)

    import_id = browser.url.rsplit("/", 1)[-1].split("?")[0]
    customer = await api.customer(f"{tag}-7")
    assert customer["points_balance"] == 8
    entries = await api.get(TRANSACTIONS, params={"customer_id": f"{tag}-7"})
    assert [entry["actor"] for entry in entries.json()["data"]] == [f"import:{import_id}"]

    # The recent imports list, and the exports.
    await browser.get_by_role("link", name="Import & export").first.click()
    recent = browser.locator("table tbody tr").filter(
        has=browser.locator(f'a[href$="{import_id}"]')
    )
    await expect(recent).to_contain_text("Succeeded")
    await expect(recent).to_contain_text("10,000")
    async with browser.expect_download() as download_info:
        await browser.get_by_role("link", name="Download customers.csv").click()
    download = await download_info.value
    assert re.fullmatch(r"customers-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    path = await download.path()
    with path.open(encoding="utf-8") as file:
        header = file.readline()
    assert header.startswith("customer_id,email,first_name")
