"""Customers in a real browser: search, open, adjust (once, even double-clicked), escaping,
another merchant's customer, the support role."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.support import rewards
from tests.support.browser import PASSWORD, Shop, WatchedPage, log_in, screenshots_dir
from tests.support.tenant import Tenant, create_key, create_merchant

SCREENSHOTS = screenshots_dir()
TRANSACTIONS = "/api/v1/public/customers/transactions"
TIERS = "/api/v1/tiers"


@pytest.fixture
async def api(shop: Shop, admin_server: str) -> AsyncIterator[Tenant]:
    """The shop's merchant through the real server's API (an all-scopes key)."""
    token = await create_key(shop.database, shop.merchant_id)
    async with httpx.AsyncClient(base_url=admin_server, timeout=30) as client:
        yield Tenant(shop.merchant_id, token, client, shop.database)


async def entries(api: Tenant, customer_id: str) -> list[dict[str, Any]]:
    response = await api.get(TRANSACTIONS, params={"customer_id": customer_id, "limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def test_find_a_customer_and_adjust_the_balance(
    page: WatchedPage, shop: Shop, api: Tenant
) -> None:
    tag = shop.merchant_id.hex[-12:]
    platform_id = f"shop-{tag}"
    for tier in ({"name": "Silver", "threshold": 0}, {"name": "Gold", "threshold": 2000}):
        assert (await api.post(TIERS, json=tier)).status_code == 201
    await api.enrol(f"other-{tag}", first_name="Marta", email=f"marta.{tag}@example.com")
    await api.enrol(
        platform_id,
        email=f"ada.{tag}@example.com",
        first_name="Ada",
        last_name="Lovelace",
        date_of_birth="1985-12-10",
    )
    for points, description in ((500, "Welcome bonus"), (320, "Order #1043"), (-100, "Return")):
        assert (await api.adjust(platform_id, points, description)).status_code == 201

    await log_in(page.page, shop.admin_email, PASSWORD)
    await (
        page.page.get_by_role("navigation", name="Main")
        .get_by_role("link", name="Customers")
        .click()
    )
    # Typing refreshes the list (htmx) and the address follows the search.
    search = page.page.get_by_label("Search")
    await search.press_sequentially(f"ada.{tag}")
    results = page.page.locator("#customers-table tbody tr")
    await expect(results).to_have_count(1)
    await expect(results).to_contain_text("Ada Lovelace")
    await expect(results).to_contain_text("720")
    await expect(page.page).to_have_url(re.compile(r"search=ada"))
    await results.get_by_role("link", name=platform_id).click()

    await expect(page.page.get_by_role("heading", name="Ada Lovelace", level=1)).to_be_visible()
    await expect(page.page.locator("#balance-points .value")).to_have_text("720")
    form = page.page.locator("#adjust-form")
    await form.get_by_label("Points", exact=True).fill("250")
    await form.get_by_label("Description", exact=True).fill("Sorry for the late parcel")
    await form.get_by_label("Internal note").fill("Ticket 4411, approved by Sam")
    await form.get_by_role("button", name="Adjust points").click()

    await expect(page.page.get_by_role("status")).to_have_text(
        "+250 points added. New balance: 970 points."
    )
    await expect(page.page.locator("#balance-points .value")).to_have_text("970")
    newest = page.page.locator("#activity-table tbody tr").first
    await expect(newest).to_contain_text("+250")
    await expect(newest).to_contain_text("Sorry for the late parcel")
    await expect(newest).to_contain_text("Ticket 4411, approved by Sam")
    await expect(newest).to_contain_text(f"user:{shop.admin_email}")

    customer = await api.customer(platform_id)
    assert customer["points_balance"] == 970
    latest = (await entries(api, platform_id))[0]
    assert (latest["points"], latest["actor"]) == (250, f"user:{shop.admin_email}")
    assert latest["internal_note"] == "Ticket 4411, approved by Sam"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.page.set_viewport_size({"width": 1280, "height": 900})
    await page.page.screenshot(path=str(SCREENSHOTS / "customer.png"), full_page=True)


async def test_a_double_submitted_adjustment_moves_points_once(
    page: WatchedPage, shop: Shop, api: Tenant
) -> None:
    platform_id = f"double-{shop.merchant_id.hex[-12:]}"
    customer = await api.enrol(platform_id, first_name="Dora")
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto(f"/admin/customers/{customer['id']}")
    form = page.page.locator("#adjust-form")
    await form.get_by_label("Points", exact=True).fill("100")
    await form.get_by_label("Description", exact=True).fill("Goodwill")
    await form.get_by_role("button", name="Adjust points").dblclick()
    await expect(page.page.get_by_role("status")).to_have_text(
        "+100 points added. New balance: 100 points."
    )
    assert len(await entries(api, platform_id)) == 1

    # The same form sent twice, as a browser retrying it would: one movement.
    fields = {
        name: await form.locator(f"input[name={name}]").input_value()
        for name in ("_csrf", "idempotency_key")
    }
    data: dict[str, str | float | bool] = {
        **fields,
        "points": "40",
        "description": "Again",
        "internal_note": "",
    }
    action = f"/admin/customers/{customer['id']}/adjust"
    first = await page.page.request.post(action, form=data, max_redirects=0)
    second = await page.page.request.post(action, form=data, max_redirects=0)
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    assert [entry["points"] for entry in await entries(api, platform_id)] == [40, 100]
    assert (await api.customer(platform_id))["points_balance"] == 140


async def test_a_script_in_a_name_stays_text(page: WatchedPage, shop: Shop, api: Tenant) -> None:
    payload = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(2)>'
    platform_id = f"xss-{shop.merchant_id.hex[-12:]}"
    # Enrolment strips tags but decodes entities: these store the payloads themselves.
    customer = await api.enrol(
        platform_id, first_name=html.escape(payload), last_name=html.escape(image)
    )
    assert (await api.customer(platform_id))["first_name"] == payload
    dialogs: list[str] = []
    page.page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto(f"/admin/customers?search={platform_id}")
    await expect(page.page.locator("#customers-table tbody")).to_contain_text(f"{payload} {image}")
    await page.page.goto(f"/admin/customers/{customer['id']}")
    await expect(page.page.get_by_role("heading", level=1)).to_have_text(f"{payload} {image}")
    await expect(page.page.locator("#profile-first-name")).to_have_text(payload)
    assert await page.page.locator("img").count() == 0
    assert dialogs == []


async def test_another_merchants_customer_is_the_404_page(
    page: WatchedPage, shop: Shop, api: Tenant
) -> None:
    other_id = await create_merchant(shop.database, "Another shop")
    other = Tenant(other_id, await create_key(shop.database, other_id), api.client, shop.database)
    theirs = await other.enrol(f"theirs-{shop.merchant_id.hex[-12:]}", first_name="Olga")
    page.expect_status(404)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto(f"/admin/customers/{theirs['id']}")
    await expect(page.page.get_by_role("heading", name="Page not found")).to_be_visible()
    await expect(page.page.get_by_text("Olga")).to_have_count(0)


async def test_support_staff_get_the_403_page_outside_customers(
    page: WatchedPage, shop: Shop
) -> None:
    email = f"agent-{shop.merchant_id.hex[-12:]}@example.com"
    await shop.add_user(email, role="support")
    page.expect_status(403)
    await log_in(page.page, email, PASSWORD)
    await expect(page.page.get_by_role("heading", name="Customers", level=1)).to_be_visible()
    for path in ("/admin/", "/admin/rewards"):
        await page.page.goto(path)
        await expect(page.page.get_by_role("heading", name="Not allowed")).to_be_visible()


async def test_admins_approve_pending_credits_and_revert_rewards(
    page: WatchedPage, shop: Shop, api: Tenant
) -> None:
    platform_id = f"buttons-{shop.merchant_id.hex[-12:]}"
    reward = await rewards.create(api, rewards.FIVE_OFF)
    await rewards.funded(api, platform_id, 600)
    held = await api.adjust(platform_id, 75, "Order 9", pending_days=7)
    assert held.status_code == 201
    redeemed = await rewards.redeem(api, platform_id, reward["id"])
    assert redeemed.status_code == 201
    customer = await api.customer(platform_id)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto(f"/admin/customers/{customer['id']}")
    await expect(page.page.locator("#balance-pending .value")).to_have_text("75")
    await page.page.locator("#pending").get_by_role("button", name="Approve").click()
    await expect(page.page.get_by_role("status")).to_have_text(
        "Approved: 75 pending points are now available."
    )
    await expect(page.page.locator("#balance-points .value")).to_have_text("175")
    await expect(page.page.locator("#pending")).to_have_count(0)
    # Revert asks first (window.confirm, accepted by the fixture).
    await page.page.locator("#rewards").get_by_role("button", name="Revert").click()
    await expect(page.page.get_by_role("status")).to_have_text(
        "The reward is reverted: 500 points given back."
    )
    await expect(page.page.locator("#balance-points .value")).to_have_text("675")
    await expect(page.page.locator("#rewards")).to_contain_text("revert")
    assert (await api.customer(platform_id))["points_balance"] == 675
