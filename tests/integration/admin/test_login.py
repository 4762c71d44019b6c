"""Signing in: wrong credentials, the throttle, several merchants, the form's CSRF."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.admin.service import locked_until, purge_stale
from loyalty.db.engine import Database
from loyalty.db.tables import login_attempts
from loyalty.db.types import utc_now
from loyalty.ids import new_id
from tests.support.browser import (
    PASSWORD,
    AdminClient,
    ClientFactory,
    Shop,
    add_staff,
)
from tests.support.clock import Clock
from tests.support.tenant import create_merchant

WRONG = "Wrong email or password."


async def failures(database: Database, email: str) -> int:
    async with database.read() as connection:
        rows = await connection.execute(
            select(login_attempts.c.id).where(login_attempts.c.email == email)
        )
        return len(rows.all())


async def test_wrong_credentials_never_say_which_part(
    admin_client: AdminClient, shop: Shop, unique_id: str
) -> None:
    wrong_password = await admin_client.login(shop.admin_email, "not the password")
    unknown_email = await admin_client.login(f"nobody-{unique_id}@example.com")
    for response in (wrong_password, unknown_email):
        assert response.status_code == 401
        assert WRONG in response.text
        assert "loyalty_admin=" not in response.headers.get("set-cookie", "")
    # What was typed stays in the form (never the password).
    assert f'value="nobody-{unique_id}@example.com"' in unknown_email.text
    assert "not the password" not in wrong_password.text


async def test_the_email_is_not_case_sensitive(admin_client: AdminClient, shop: Shop) -> None:
    response = await admin_client.login(f"  {shop.admin_email.upper()} ")
    assert response.status_code == 303


async def test_five_failures_lock_the_email_for_15_minutes(
    admin_client: AdminClient, shop: Shop, clock: Clock
) -> None:
    for _ in range(5):
        assert (await admin_client.login(shop.admin_email, "wrong password")).status_code == 401
    clock.advance(seconds=30)
    locked = await admin_client.login(shop.admin_email)  # the right password
    assert locked.status_code == 429
    assert "Too many failed attempts. Try again in 15 minutes." in locked.text
    assert await failures(shop.database, shop.admin_email) == 5  # refusals do not count
    clock.advance(minutes=14)
    still = await admin_client.login(shop.admin_email)
    assert "Too many failed attempts. Try again in 1 minute." in still.text
    clock.advance(seconds=31)  # 15 minutes and a second after the fifth failure
    assert (await admin_client.login(shop.admin_email)).status_code == 303
    assert await failures(shop.database, shop.admin_email) == 0  # a success clears them


async def test_unknown_emails_are_throttled_too(admin_client: AdminClient, unique_id: str) -> None:
    email = f"Ghost-{unique_id}@Example.com"
    for _ in range(5):
        assert (await admin_client.login(email, "guess")).status_code == 401
    response = await admin_client.login(email.lower(), "guess")
    assert response.status_code == 429
    assert "Too many failed attempts" in response.text


async def test_failures_spread_over_more_than_15_minutes_do_not_lock(
    admin_client: AdminClient, shop: Shop, clock: Clock
) -> None:
    for _ in range(4):
        await admin_client.login(shop.admin_email, "wrong password")
    clock.advance(minutes=16)
    for _ in range(4):
        assert (await admin_client.login(shop.admin_email, "wrong password")).status_code == 401
    assert (await admin_client.login(shop.admin_email)).status_code == 303


def test_the_lockout_ends_15_minutes_after_the_fifth_failure() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    five = [start + timedelta(minutes=3 * i) for i in range(5)]  # 12 minutes apart
    assert locked_until(five) == five[-1] + timedelta(minutes=15)
    spread = [start + timedelta(minutes=4 * i) for i in range(5)]  # 16 minutes apart
    assert locked_until(spread) is None
    assert locked_until(five[:4]) is None


async def test_old_failures_are_purged(database: Database, unique_id: str) -> None:
    email = f"old-{unique_id}@example.com"
    now = utc_now()

    async def work(connection: AsyncConnection) -> None:
        for attempted_at in (now - timedelta(days=2), now - timedelta(hours=1)):
            await connection.execute(
                login_attempts.insert().values(email=email, id=new_id(), attempted_at=attempted_at)
            )
        await purge_stale(connection, now)

    await database.transaction(work)
    assert await failures(database, email) == 1


async def test_one_email_in_several_merchants_chooses_the_merchant(
    admin_clients: ClientFactory, database: Database, unique_id: str
) -> None:
    email = f"consultant-{unique_id}@example.com"
    first = await create_merchant(database, f"Alpha {unique_id}")
    second = await create_merchant(database, f"Beta {unique_id}")
    other = await create_merchant(database, f"Gamma {unique_id}")
    await add_staff(database, first, email, role="admin")
    await add_staff(database, second, email, role="support")
    await add_staff(database, other, email, role="admin", password="another password!")
    admin_client = await admin_clients()
    choice = await admin_client.login(email)
    assert choice.status_code == 200
    options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', choice.text)
    # Only the merchants where this password is right.
    assert options == [(str(first), f"Alpha {unique_id}"), (str(second), f"Beta {unique_id}")]
    assert 'name="merchant_id"' in choice.text
    assert PASSWORD not in choice.text
    signed = await admin_client.login(email, merchant_id=str(second))
    assert signed.status_code == 303
    assert signed.headers["location"] == "/admin/customers"  # support in Beta
    assert (admin_client.session_cookie or "").startswith(f"{second}.")
    # A merchant where the password is wrong is no way in.
    refused = await admin_client.login(email, merchant_id=str(other))
    assert refused.status_code == 401
    refused = await admin_client.login(email, merchant_id=str(uuid.uuid4()))
    assert refused.status_code == 401


async def test_the_sign_in_form_needs_its_csrf_token(
    admin_clients: ClientFactory, shop: Shop
) -> None:
    admin_client = await admin_clients()
    data = {"email": shop.admin_email, "password": PASSWORD}
    no_token = await admin_client.post("/admin/login", data)
    assert no_token.status_code == 403
    assert no_token.headers["content-type"].startswith("text/html")
    await admin_client.get("/admin/login")  # the cookie, but a forged field
    forged = await admin_client.post("/admin/login", {**data, "_csrf": "0" * 64})
    assert forged.status_code == 403
    # A token taken from another admin_client's page does not match this admin_client's cookie.
    other = await admin_clients()
    page = await other.get("/admin/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert token is not None
    crossed = await admin_client.post("/admin/login", {**data, "_csrf": token.group(1)})
    assert crossed.status_code == 403
    assert admin_client.session_cookie is None
