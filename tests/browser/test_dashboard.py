"""The Dashboard in a real browser: its figures, the uPlot chart drawn without a console
error, the period links; the screenshot of the docs."""

from __future__ import annotations

import random
import re

import httpx
from playwright.async_api import expect

from tests.support import rewards
from tests.support.browser import PASSWORD, Shop, WatchedPage, log_in, screenshots_dir
from tests.support.clock import Clock
from tests.support.tenant import Tenant, create_key

SCREENSHOTS = screenshots_dir()
SEEDED_DAYS = 28


async def seed(api: Tenant, clock: Clock, tag: str) -> int:
    """A month of a small shop's activity, one day at a time (the in-process app writes
    it with its clock moved back, so each day's rollup gets its own movements).
    Returns the points outstanding."""
    rng = random.Random(7)
    reward = await rewards.create(api, rewards.FIVE_OFF)  # 500 points
    balances: dict[str, int] = {}
    clock.advance(days=-SEEDED_DAYS)
    for day in range(SEEDED_DAYS + 1):
        for _ in range(rng.choice((0, 1, 1, 2))):
            customer_id = f"m{len(balances):02d}-{tag}"
            await api.enrol(customer_id, first_name=f"Member {len(balances)}")
            balances[customer_id] = 0
        for customer_id in rng.sample(sorted(balances), k=min(len(balances), 3)):
            points = rng.choice((40, 75, 120, 250, 400))
            assert (await api.adjust(customer_id, points, "Order")).status_code == 201
            balances[customer_id] += points
        rich = [customer_id for customer_id, points in balances.items() if points >= 500]
        if rich and day % 3 == 0:
            response = await rewards.redeem(api, rich[0], reward["id"])
            assert response.status_code == 201, response.text
            balances[rich[0]] -= 500
        if balances and day % 5 == 4:
            customer_id = max(balances, key=lambda key: balances[key])
            assert (await api.adjust(customer_id, -30, "Correction")).status_code == 201
            balances[customer_id] -= 30
        if day < SEEDED_DAYS:
            clock.advance(days=1)
    return sum(balances.values())


async def test_the_dashboard_draws_its_figures_and_chart(
    page: WatchedPage, shop: Shop, client: httpx.AsyncClient, clock: Clock
) -> None:
    api = Tenant(
        shop.merchant_id,
        await create_key(shop.database, shop.merchant_id),
        client,
        shop.database,
    )
    outstanding = await seed(api, clock, shop.merchant_id.hex[-12:])

    await log_in(page.page, shop.admin_email, PASSWORD)
    await expect(page.page).to_have_url(re.compile(r"/admin/$"))
    await expect(page.page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    await expect(page.page.locator("#figure-outstanding .value")).to_have_text(f"{outstanding:,}")
    await expect(page.page.locator("#figure-outstanding .detail")).to_contain_text(
        f"{outstanding / 100:,.2f} at 0.01 per point"
    )
    # uPlot drew the chart: its root element and a canvas with a size.
    chart = page.page.locator("#chart .uplot")
    await expect(chart).to_have_count(1)
    canvas = page.page.locator("#chart canvas")
    await expect(canvas).to_have_count(1)
    box = await canvas.bounding_box()
    assert box is not None
    assert box["width"] > 300
    assert box["height"] > 200
    legend = page.page.locator("#chart .u-legend")
    for label in ("Issued", "Redeemed", "Expired", "Outstanding"):
        await expect(legend).to_contain_text(label)
    # The same daily figures in a table under the chart.
    await page.page.get_by_text("Daily figures (table)").click()
    rows = page.page.locator("#daily-table tbody tr")
    await expect(rows).to_have_count(30)
    await expect(rows.first.locator("td").last).to_have_text(f"{outstanding:,}")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.page.get_by_text("Daily figures (table)").click()  # closed again
    await page.page.set_viewport_size({"width": 1280, "height": 900})
    await expect(page.page.locator("#chart canvas")).to_have_count(1)
    await page.page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    # Another period: the chart is drawn again for 90 days.
    await (
        page.page.get_by_role("navigation", name="Period")
        .get_by_role("link", name="90 days")
        .click()
    )
    await expect(page.page).to_have_url(re.compile(r"days=90"))
    await expect(page.page.locator("#chart .uplot")).to_have_count(1)
    await expect(page.page.locator("#daily-table tbody tr")).to_have_count(90)
    await expect(page.page.locator("#figure-outstanding .value")).to_have_text(f"{outstanding:,}")


async def test_a_bad_period_shows_30_days_with_a_message(page: WatchedPage, shop: Shop) -> None:
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/?days=7")
    await expect(page.page.get_by_role("alert")).to_have_text(
        "The period can be 30, 90 or 365 days: showing the last 30 days."
    )
    await expect(page.page.locator("#chart .uplot")).to_have_count(1)
    await expect(page.page.locator("#figure-rate .value")).to_have_text("—")
