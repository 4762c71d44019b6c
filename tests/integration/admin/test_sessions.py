"""Staff sessions: cookie flags, rotation at sign-in, idle expiry, sign-out, disabled users."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from loyalty.db.engine import Database
from loyalty.db.tables import admin_sessions
from tests.support.browser import (
    AdminClient,
    ClientFactory,
    Shop,
    csrf_of,
    disable_staff,
    staff_emails,
)
from tests.support.clock import Clock


async def sessions_of(database: Database, shop: Shop) -> int:
    async with database.read() as connection:
        statement = select(func.count()).where(admin_sessions.c.merchant_id == shop.merchant_id)
        return int((await connection.execute(statement)).scalar_one())


def is_sign_in_redirect(response: httpx.Response) -> bool:
    return response.status_code == 303 and response.headers.get("location") == "/admin/login"


async def test_the_session_cookie_is_http_only_lax_and_scoped_to_the_admin(
    admin_client: AdminClient, shop: Shop
) -> None:
    response = await admin_client.login(shop.admin_email)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/"
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if "loyalty_admin=" in c]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/admin", "samesite=lax"} <= flags
    assert "secure" not in flags  # plain http (development): a Secure cookie would never return
    merchant_part, _, token = cookie.split(";")[0].split("=", 1)[1].partition(".")
    assert merchant_part == str(shop.merchant_id)
    assert len(token) >= 40


async def test_the_cookie_is_secure_over_https(admin_clients: ClientFactory, shop: Shop) -> None:
    admin_client = await admin_clients("https://loyalty.test")
    response = await admin_client.login(shop.admin_email)
    assert response.status_code == 303
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if "loyalty_admin=" in c]
    assert "secure" in cookie.lower()
    assert (await admin_client.get("/admin/users")).status_code == 200


async def test_signing_in_again_replaces_the_session(
    admin_clients: ClientFactory, shop: Shop
) -> None:
    admin_client = await admin_clients()
    await admin_client.login(shop.admin_email)
    first = admin_client.session_cookie
    assert first is not None
    await admin_client.login(shop.admin_email)
    second = admin_client.session_cookie
    assert second is not None
    assert second != first
    assert await sessions_of(shop.database, shop) == 1
    # Whoever held the old cookie holds nothing.
    thief = await admin_clients()
    thief.set_session_cookie(first)
    assert is_sign_in_redirect(await thief.get("/admin/users"))
    assert (await admin_client.get("/admin/users")).status_code == 200


async def test_pages_need_a_session(admin_client: AdminClient) -> None:
    assert is_sign_in_redirect(await admin_client.get("/admin/users"))
    assert is_sign_in_redirect(await admin_client.get("/admin/"))
    htmx = await admin_client.get("/admin/users", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == "/admin/login"
    admin_client.set_session_cookie("not-a-session")
    assert is_sign_in_redirect(await admin_client.get("/admin/users"))


async def test_a_session_expires_after_12_idle_hours(
    signed_in: AdminClient, shop: Shop, clock: Clock
) -> None:
    clock.advance(hours=11, minutes=59)
    assert (await signed_in.get("/admin/users")).status_code == 200
    # That request counted as activity: another 11 h 59 min later it still works.
    clock.advance(hours=11, minutes=59)
    assert (await signed_in.get("/admin/users")).status_code == 200
    clock.advance(hours=12, minutes=1)
    assert is_sign_in_redirect(await signed_in.get("/admin/users"))
    assert await sessions_of(shop.database, shop) == 0


async def test_last_seen_is_written_at_most_once_a_minute(
    signed_in: AdminClient, shop: Shop, clock: Clock
) -> None:
    async def last_seen() -> object:
        async with shop.database.read() as connection:
            statement = select(admin_sessions.c.last_seen_at).where(
                admin_sessions.c.merchant_id == shop.merchant_id
            )
            return (await connection.execute(statement)).scalar_one()

    before = await last_seen()
    clock.advance(seconds=30)
    await signed_in.get("/admin/users")
    assert await last_seen() == before
    clock.advance(seconds=31)
    await signed_in.get("/admin/users")
    assert await last_seen() != before


async def test_signing_out_ends_the_session(signed_in: AdminClient, shop: Shop) -> None:
    cookie = signed_in.session_cookie
    token = await signed_in.csrf()
    response = await signed_in.post("/admin/logout", {"_csrf": token})
    assert is_sign_in_redirect(response)
    assert signed_in.session_cookie is None
    assert await sessions_of(shop.database, shop) == 0
    assert cookie is not None
    signed_in.set_session_cookie(cookie)
    assert is_sign_in_redirect(await signed_in.get("/admin/users"))


async def test_signing_out_needs_the_csrf_token(signed_in: AdminClient, shop: Shop) -> None:
    response = await signed_in.post("/admin/logout", {})
    assert response.status_code == 403
    assert await sessions_of(shop.database, shop) == 1
    assert (await signed_in.get("/admin/users")).status_code == 200


async def test_a_disabled_users_session_stops_at_once(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    agent = await admin_clients()
    response = await agent.login(email)
    assert response.headers["location"] == "/admin/customers"
    token = csrf_of((await agent.get("/admin/customers")).text)
    assert token
    await disable_staff(shop.database, shop.merchant_id, email)
    assert is_sign_in_redirect(await agent.get("/admin/customers"))
    # And it cannot sign in again.
    again = await agent.login(email)
    assert again.status_code == 401
    assert "Wrong email or password." in again.text


async def test_support_staff_get_the_403_page_for_admin_pages(
    admin_clients: ClientFactory, shop: Shop, unique_id: str
) -> None:
    email = f"agent-{unique_id}@example.com"
    await shop.add_user(email, role="support")
    agent = await admin_clients()
    await agent.login(email)
    page = await agent.get("/admin/users")
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert "Not allowed" in page.text
    # The navigation offers support staff only what they may open.
    assert 'href="/admin/customers"' in page.text
    assert 'href="/admin/users"' not in page.text
    token = csrf_of(page.text)
    refused = await agent.post(
        "/admin/users",
        {"_csrf": token, "email": f"x-{unique_id}@example.com", "role": "admin",
         "password": "long enough pass", "password_confirm": "long enough pass"},
    )  # fmt: skip
    assert refused.status_code == 403
    assert f"x-{unique_id}@example.com" not in await staff_emails(shop.database, shop.merchant_id)
