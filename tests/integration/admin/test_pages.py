"""What every admin page does: CSRF, security headers, escaping, HTML error pages;
and the Users page, the first page built on them."""

from __future__ import annotations

import re

import pytest

from loyalty.admin.mount import CONTENT_SECURITY_POLICY
from loyalty.users import service as users_service
from tests.support.browser import (
    AdminClient,
    ClientFactory,
    Shop,
    add_staff,
    csrf_of,
    staff_emails,
)
from tests.support.tenant import create_merchant

NEW_PASSWORD = "a long new password"


async def emails(shop: Shop) -> list[str]:
    return await staff_emails(shop.database, shop.merchant_id)


def new_user_form(email: str, token: str | None, **overrides: str) -> dict[str, str]:
    form = {
        "email": email,
        "role": "support",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        **overrides,
    }
    if token is not None:
        form["_csrf"] = token
    return form


def field_error(html: str, name: str) -> str | None:
    """The error shown under the input ``name`` (tied to it by aria-describedby)."""
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', html)
    if match is None:
        return None
    assert re.search(rf'id="f-{name}"[^>]*aria-describedby="[^"]*f-{name}-error', html)
    return match.group(1)


# --- CSRF ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "f" * 64])
async def test_a_change_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    signed_in: AdminClient, shop: Shop, unique_id: str, token: str | None
) -> None:
    email = f"new-{unique_id}@example.com"
    response = await signed_in.post("/admin/users", new_user_form(email, token))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "nothing was changed" in response.text
    assert email not in await emails(shop)


async def test_the_csrf_token_of_another_session_is_refused(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    mine = await admin_clients()
    theirs = await admin_clients()
    await mine.login(shop.admin_email)
    await theirs.login(shop.admin_email)
    their_token = await theirs.csrf()
    email = f"new-{unique_id}@example.com"
    assert (await mine.post("/admin/users", new_user_form(email, their_token))).status_code == 403
    assert email not in await emails(shop)


async def test_htmx_requests_send_the_token_in_a_header(
    signed_in: AdminClient, shop: Shop, unique_id: str
) -> None:
    page = await signed_in.get("/admin/users")
    match = re.search(r'<body hx-headers="([^"]+)"', page.text)
    assert match is not None
    headers = match.group(1).replace("&#34;", '"')
    token = csrf_of(page.text)
    assert headers == '{"X-CSRF-Token": "' + token + '"}'
    email = f"htmx-{unique_id}@example.com"
    response = await signed_in.post(
        "/admin/users",
        new_user_form(email, None),
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response.headers["HX-Redirect"].startswith("/admin/users?notice=")
    assert email in await emails(shop)


# --- headers, escaping, error pages -------------------------------------------------


async def test_every_admin_response_carries_the_security_headers(
    signed_in: AdminClient, admin_clients: ClientFactory
) -> None:
    anonymous = await admin_clients()
    responses = [
        await signed_in.get("/admin/users"),
        await signed_in.get("/admin/no-such-page"),
        await signed_in.post("/admin/users", {}),
        await anonymous.get("/admin/login"),
        await anonymous.get("/admin/users"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 403, 200, 303]
    for response in responses:
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


async def test_pages_have_no_inline_script_or_style(signed_in: AdminClient) -> None:
    for path in ("/admin/users", "/admin/login", "/admin/no-such-page"):
        html = (await signed_in.get(path)).text
        for script in re.findall(r"<script[^>]*>", html):
            assert "src=" in script or 'type="application/json"' in script, script
        assert " style=" not in html
        assert "<style" not in html
        assert re.search(r"\son[a-z]+=", html) is None


async def test_the_assets_are_served_by_the_app(admin_client: AdminClient) -> None:
    for path, kind in [
        ("/static/admin/vendor/htmx.min.js", "javascript"),
        ("/static/admin/vendor/uPlot.iife.min.js", "javascript"),
        ("/static/admin/vendor/uPlot.min.css", "css"),
        ("/static/admin/admin.css", "css"),
        ("/static/admin/admin.js", "javascript"),
    ]:
        response = await admin_client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"]


async def test_user_supplied_text_is_escaped(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    merchant = await create_merchant(shop.database, "<script>alert('shop')</script> & Co")
    email = f"xss-{unique_id}@example.com"
    await add_staff(shop.database, merchant, email)
    admin_client = await admin_clients()
    await admin_client.login(email)
    page = await admin_client.get("/admin/users")
    assert "<script>alert(" not in page.text
    assert "&lt;script&gt;alert(&#39;shop&#39;)&lt;/script&gt; &amp; Co" in page.text
    typed = '"><script>alert(1)</script>'
    token = csrf_of(page.text)
    refused = await admin_client.post("/admin/users", new_user_form(typed, token))
    assert refused.status_code == 422
    assert "<script>alert(1)" not in refused.text
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in refused.text


async def test_errors_under_admin_are_html_and_the_api_keeps_json(
    signed_in: AdminClient, admin_client: AdminClient
) -> None:
    missing = await signed_in.get("/admin/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text
    assert 'aria-label="Main"' in missing.text  # with the navigation
    api = await admin_client.client.get("/api/v1/public/customers")
    assert api.status_code == 401
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["error"]["code"] == "unauthorized"


# --- the Users page -----------------------------------------------------------------


async def test_an_admin_adds_a_user_who_can_then_sign_in(
    signed_in: AdminClient, admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    email = f"New-{unique_id}@Example.com"
    token = await signed_in.csrf()
    response = await signed_in.post("/admin/users", new_user_form(email, token))
    assert response.status_code == 303
    page = await signed_in.get(response.headers["location"])
    assert f"{email.lower()} can now sign in." in page.text
    assert email.lower() in await emails(shop)
    newcomer = await admin_clients()
    assert (await newcomer.login(email, NEW_PASSWORD)).headers["location"] == "/admin/customers"


async def test_a_forged_notice_is_not_shown(signed_in: AdminClient) -> None:
    page = await signed_in.get(
        "/admin/users", params={"notice": "Call 555 now", "signature": "0" * 32}
    )
    assert "Call 555 now" not in page.text


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password": "short", "password_confirm": "short"}, "password",
         "Must be 10 to 1024 characters."),
        ({"password_confirm": "something else"}, "password_confirm",
         "The two passwords differ."),
        ({"email": "not-an-email"}, "email", "Must be a valid email address."),
        ({"role": "owner"}, "role", "Must be admin or support."),
    ],
)  # fmt: skip
async def test_add_user_errors_show_next_to_their_field(
    signed_in: AdminClient,
    shop: Shop,
    unique_id: str,
    overrides: dict[str, str],
    field: str,
    message: str,
) -> None:
    email = f"new-{unique_id}@example.com"
    token = await signed_in.csrf()
    form = {**new_user_form(email, token), **overrides}
    response = await signed_in.post("/admin/users", form)
    assert response.status_code == 422
    assert field_error(response.text, field) == message
    if field != "email":  # what was typed is kept
        assert f'value="{email}"' in response.text
    assert NEW_PASSWORD not in response.text
    assert form["email"] not in await emails(shop)


async def test_an_email_already_taken_shows_next_to_the_email(
    signed_in: AdminClient, shop: Shop
) -> None:
    token = await signed_in.csrf()
    response = await signed_in.post("/admin/users", new_user_form(shop.admin_email, token))
    assert response.status_code == 422
    assert field_error(response.text, "email") == (
        "This merchant already has a user with this email."
    )


async def test_an_admin_disables_a_user_but_not_themselves(
    signed_in: AdminClient, shop: Shop, unique_id: str
) -> None:
    email = f"leaver-{unique_id}@example.com"
    user_id = await shop.add_user(email, role="support")
    page = await signed_in.get("/admin/users")
    assert f'action="/admin/users/{user_id}/disable"' in page.text
    assert f'action="/admin/users/{shop.admin_id}/disable"' not in page.text
    token = csrf_of(page.text)
    response = await signed_in.post(f"/admin/users/{user_id}/disable", {"_csrf": token})
    assert response.status_code == 303
    async with shop.database.read() as connection:
        users = {u.email: u for u in await users_service.list_users(connection, shop.merchant_id)}
    assert users[email].disabled_at is not None
    myself = await signed_in.post(f"/admin/users/{shop.admin_id}/disable", {"_csrf": token})
    assert myself.status_code == 422
    assert "You cannot disable yourself" in myself.text
    assert users[shop.admin_email].disabled_at is None


async def test_another_merchants_user_is_the_404_page(
    signed_in: AdminClient, shop: Shop, unique_id: str
) -> None:
    elsewhere = await create_merchant(shop.database, "Elsewhere")
    stranger = await add_staff(shop.database, elsewhere, f"stranger-{unique_id}@example.com")
    token = await signed_in.csrf()
    response = await signed_in.post(f"/admin/users/{stranger}/disable", {"_csrf": token})
    assert response.status_code == 404
    assert "Page not found" in response.text
    async with shop.database.read() as connection:
        (user,) = await users_service.list_users(connection, elsewhere)
    assert user.disabled_at is None


async def test_a_database_failure_is_a_500_page_without_details(
    signed_in: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(users_service, "list_users", broken)
    response = await signed_in.get("/admin/users")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
