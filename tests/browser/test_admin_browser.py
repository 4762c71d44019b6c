"""The admin in a real browser: sign in, lockout, sign out, CSRF, the Users page."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.support.browser import PASSWORD, Shop, WatchedPage, log_in


async def test_sign_in_and_out(page: WatchedPage, shop: Shop) -> None:
    await log_in(page.page, shop.admin_email, PASSWORD)
    await expect(page.page).to_have_url(re.compile(r"/admin/$"))  # admins land on the dashboard
    await page.page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    await expect(page.page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    await expect(page.page.get_by_role("cell", name=f"{shop.admin_email} you")).to_be_visible()
    await page.page.get_by_role("button", name="Sign out").click()
    await expect(page.page).to_have_url(re.compile(r"/admin/login$"))
    await page.page.goto("/admin/users")
    await expect(page.page).to_have_url(re.compile(r"/admin/login$"))


async def test_wrong_password_then_lockout(page: WatchedPage, shop: Shop) -> None:
    page.expect_status(401, 429)
    for _ in range(5):
        await log_in(page.page, shop.admin_email, "not my password")
        await expect(page.page.get_by_role("alert")).to_have_text("Wrong email or password.")
        # The email is kept, the password is not.
        await expect(page.page.get_by_label("Email")).to_have_value(shop.admin_email)
        await expect(page.page.get_by_label("Password")).to_have_value("")
    await log_in(page.page, shop.admin_email, PASSWORD)
    await expect(page.page.get_by_role("alert")).to_have_text(
        "Too many failed attempts. Try again in 15 minutes."
    )
    await expect(page.page).to_have_url(re.compile(r"/admin/login$"))


async def test_a_forged_csrf_token_is_refused(page: WatchedPage, shop: Shop) -> None:
    page.expect_status(403)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/users")
    email = f"forged-{shop.merchant_id.hex[-12:]}@example.com"
    form = page.page.locator("form[action='/admin/users']")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password", exact=True).fill("a long new password")
    await form.get_by_label("Password again").fill("a long new password")
    await form.locator("input[name=_csrf]").evaluate("input => { input.value = 'forged'; }")
    await form.get_by_role("button", name="Add user").click()
    await expect(page.page.get_by_role("heading", name="This form has expired")).to_be_visible()
    await page.page.goto("/admin/users")
    await expect(page.page.get_by_text(email)).to_have_count(0)


async def test_the_users_page_adds_and_disables_a_user(page: WatchedPage, shop: Shop) -> None:
    page.expect_status(422)
    await log_in(page.page, shop.admin_email, PASSWORD)
    await page.page.goto("/admin/users")
    form = page.page.locator("form[action='/admin/users']")
    email = f"agent-{shop.merchant_id.hex[-12:]}@example.com"
    # A password too short: the error next to the field, the email kept.
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Role").select_option("support")
    await form.get_by_label("Password", exact=True).fill("short")
    await form.get_by_label("Password again").fill("short")
    await form.get_by_role("button", name="Add user").click()
    password = page.page.locator("form[action='/admin/users']").get_by_label("Password", exact=True)
    await expect(password).to_have_attribute("aria-invalid", "true")
    await expect(page.page.locator("#f-password-error")).to_have_text(
        "Must be 10 to 1024 characters."
    )
    await expect(page.page.get_by_label("Email")).to_have_value(email)
    form = page.page.locator("form[action='/admin/users']")
    await form.get_by_label("Password", exact=True).fill("a long new password")
    await form.get_by_label("Password again").fill("a long new password")
    await form.get_by_role("button", name="Add user").click()
    await expect(page.page.get_by_role("status")).to_have_text(f"{email} can now sign in.")
    row = page.page.get_by_role("row").filter(has_text=email)
    await expect(row).to_contain_text("support")
    await expect(row).to_contain_text("Active")
    await row.get_by_role("button", name=f"Disable {email}").click()
    await expect(page.page.get_by_role("status")).to_have_text(f"{email} is disabled.")
    await expect(page.page.get_by_role("row").filter(has_text=email)).to_contain_text("Disabled")
    # Their sign-in is refused now.
    page.expect_status(401)
    await page.page.get_by_role("button", name="Sign out").click()
    await log_in(page.page, email, "a long new password")
    await expect(page.page.get_by_role("alert")).to_have_text("Wrong email or password.")


async def test_support_staff_see_only_customers(page: WatchedPage, shop: Shop) -> None:
    email = f"support-{shop.merchant_id.hex[-12:]}@example.com"
    await shop.add_user(email, role="support")
    page.expect_status(403, 404)
    await log_in(page.page, email, PASSWORD)
    await expect(page.page).to_have_url(re.compile(r"/admin/customers$"))
    navigation = page.page.get_by_role("navigation", name="Main")
    await expect(navigation.get_by_role("link")).to_have_text(["Customers"])
    await page.page.goto("/admin/users")
    await expect(page.page.get_by_role("heading", name="Not allowed")).to_be_visible()


async def test_the_pages_load_their_assets_without_console_errors(
    page: WatchedPage, shop: Shop
) -> None:
    page.expect_status(404)
    await page.page.goto("/admin/login")
    assert await page.page.evaluate("typeof window.htmx") == "object"
    await log_in(page.page, shop.admin_email, PASSWORD)
    for path in ("/admin/users", "/admin/no-such-page"):
        await page.page.goto(path)
        assert await page.page.evaluate("typeof window.htmx") == "object"
        # The stylesheet applied (no inline styles anywhere, so it is the file's).
        color = await page.page.locator(".topbar").evaluate(
            "element => getComputedStyle(element).backgroundColor"
        )
        assert color == "rgb(29, 35, 48)"
    # Keyboard: the skip link is the first stop and moves to the content.
    await page.page.keyboard.press("Tab")
    await expect(page.page.get_by_role("link", name="Skip to content")).to_be_focused()


async def test_every_navigation_page_loads_without_a_console_error(
    page: WatchedPage, shop: Shop
) -> None:
    """Follow every link of the navigation, as an admin, by keyboard-reachable links:
    each page answers 200, shows its heading and logs no console error (the fixture
    fails the test on any)."""
    await log_in(page.page, shop.admin_email, PASSWORD)
    navigation = page.page.get_by_role("navigation", name="Main").get_by_role("link")
    names = await navigation.all_inner_texts()
    assert len(names) >= 10, names  # dashboard to users: every page of the contract
    for name in names:
        await page.page.goto("/admin/")
        async with page.page.expect_response(
            lambda r: r.request.resource_type == "document"
        ) as done:
            await (
                page.page.get_by_role("navigation", name="Main")
                .get_by_role("link", name=name.strip(), exact=True)
                .click()
            )
        response = await done.value
        assert response.status == 200, (name, response.url)
        await expect(page.page.locator("h1").first).to_be_visible()
        assert await page.page.evaluate("typeof window.htmx") == "object"
