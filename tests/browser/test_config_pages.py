"""The configuration pages in a real browser: a reward added through its form
(htmx swapping the type's fields), the expiry preview shown before saving,
every page without a console error, support refused."""

from __future__ import annotations

import re

from playwright.async_api import expect

from loyalty.merchants import service as merchants_service
from tests.support.browser import PASSWORD, Shop, WatchedPage, log_in

PAGES = {
    "/admin/rewards": "Rewards",
    "/admin/rewards/new": "Add a reward",
    "/admin/earn-rules": "Earn rules",
    "/admin/earn-rules/new": "Add an earn rule",
    "/admin/tiers": "Tiers",
    "/admin/settings": "Programme settings",
    "/admin/api-keys": "API keys",
    "/admin/audit": "Audit log",
}


async def test_a_reward_added_through_the_form_is_listed(page: WatchedPage, shop: Shop) -> None:
    await log_in(page.page, shop.admin_email, PASSWORD)
    await (
        page.page.get_by_role("navigation", name="Main").get_by_role("link", name="Rewards").click()
    )
    await page.page.get_by_role("link", name="Add a reward").click()
    await expect(page.page.get_by_role("heading", name="Add a reward")).to_be_visible()
    await page.page.get_by_label("Name").fill("Ten percent off")
    # Choosing the type swaps its fields in (htmx), without reloading the page.
    await expect(page.page.get_by_label("Discount amount")).to_be_visible()
    await page.page.get_by_label("Type").select_option("percentage_discount")
    await expect(page.page.get_by_label("Discount percentage")).to_be_visible()
    await expect(page.page.get_by_label("Discount amount")).to_have_count(0)
    await expect(page.page.get_by_label("Name")).to_have_value("Ten percent off")
    await page.page.get_by_label("Discount percentage").fill("10")
    await page.page.get_by_label("Points cost").fill("300")
    await page.page.get_by_role("button", name="Add reward").click()
    await expect(page.page.get_by_role("status")).to_have_text("Reward “Ten percent off” added.")
    row = page.page.get_by_role("row").filter(has_text="Ten percent off")
    await expect(row).to_contain_text("Percentage discount")
    await expect(row).to_contain_text("10% off")
    await expect(row).to_contain_text("300")
    await expect(row).to_contain_text("Active")


async def test_an_invalid_reward_shows_its_errors_next_to_the_fields(
    page: WatchedPage, shop: Shop
) -> None:
    page.expect_status(422)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/rewards/new")
    await page.page.get_by_label("Name").fill("Too cheap")
    await page.page.get_by_label("Discount amount").fill("5")
    await page.page.get_by_label("Points cost").fill("-1")
    await page.page.get_by_role("button", name="Add reward").click()
    cost = page.page.get_by_label("Points cost")
    await expect(cost).to_have_attribute("aria-invalid", "true")
    await expect(cost).to_have_value("-1")
    await expect(page.page.locator("#f-points_cost-error")).to_have_text("Must be more than 0.")
    await expect(page.page.get_by_label("Name")).to_have_value("Too cheap")


async def test_the_expiry_preview_appears_before_saving(page: WatchedPage, shop: Shop) -> None:
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/settings")
    expiry = page.page.get_by_role("group", name="Points expiry")
    await expiry.get_by_label("Days").fill("90")
    await expiry.get_by_label("Days").press("Tab")
    preview = page.page.get_by_role("region", name="Expiry preview")
    await expect(preview).to_contain_text("This is the current policy")  # "never": no days
    await page.page.get_by_label("Expiry policy").select_option("inactivity")
    await expect(preview).to_contain_text("would start to expire")
    await expect(preview).to_contain_text("First expiry")
    await expect(preview).to_contain_text("Nothing is saved yet")
    await expect(page.page).to_have_url(re.compile(r"/admin/settings$"))  # no reload
    async with shop.database.read() as connection:
        saved = await merchants_service.get_program_settings(connection, shop.merchant_id)
    assert saved.expiry_policy == "none"  # previewing saves nothing

    await page.page.get_by_role("button", name="Save settings").click()
    await expect(page.page.get_by_role("status")).to_contain_text("Settings saved")
    await expect(page.page.get_by_label("Expiry policy")).to_have_value("inactivity")
    await expect(page.page.get_by_label("Days")).to_have_value("90")
    async with shop.database.read() as connection:
        saved = await merchants_service.get_program_settings(connection, shop.merchant_id)
    assert (saved.expiry_policy, saved.expiry_days) == ("inactivity", 90)


async def test_each_configuration_page_loads_without_console_errors(
    page: WatchedPage, shop: Shop
) -> None:
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/settings")
    await page.page.get_by_role("link", name="Audit log").first.click()
    await expect(page.page.get_by_role("heading", name="Audit log")).to_be_visible()
    for path, heading in PAGES.items():
        await page.page.goto(path)
        await expect(page.page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        assert await page.page.evaluate("typeof window.htmx") == "object"
    # The earn rule's kind swaps its inputs too.
    await page.page.goto("/admin/earn-rules/new")
    await page.page.get_by_label("Earned for").select_option("referral")
    await expect(page.page.get_by_label("Points for the new customer")).to_be_visible()


async def test_support_staff_get_the_403_page(page: WatchedPage, shop: Shop) -> None:
    email = f"support-{shop.merchant_id.hex[-12:]}@example.com"
    await shop.add_user(email, role="support")
    page.expect_status(403)
    await log_in(page.page, email, PASSWORD)
    await page.page.goto("/admin/rewards")
    await expect(page.page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.page.get_by_role("heading", name="Rewards")).to_have_count(0)


async def test_an_expiry_policy_without_days_says_so_next_to_the_days(
    page: WatchedPage, shop: Shop
) -> None:
    page.expect_status(422)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/settings")
    await page.page.get_by_label("Expiry policy").select_option("fixed")
    await expect(page.page.locator("#f-expiry_days-error")).to_have_text(
        "Is required when the expiry policy is fixed."
    )
    await page.page.get_by_label("Days").fill("30")
    await page.page.get_by_label("Days").press("Tab")
    await expect(page.page.locator("#f-expiry_days-error")).to_have_text("")
    preview = page.page.get_by_role("region", name="Expiry preview")
    await expect(preview).to_contain_text("First expiry")
