"""The admin UI's test support: staff users, a cookie-keeping HTTP client, a real browser.

- ``add_staff`` / ``disable_staff`` / ``create_shop``: staff users through
  ``loyalty.users.service`` (a ``Shop`` is a merchant with one admin).
- ``AdminClient``: httpx against the ASGI app, keeping cookies as a browser
  does, with ``login`` (reads the sign-in form's CSRF token first) and ``csrf``.
- A real browser: Debian's chromium driven by Playwright. Playwright never
  downloads a browser here: it launches ``/usr/bin/chromium`` (``apt-get
  install chromium``; ``.ci/run`` installs it when missing). If the browser
  cannot start, the tests fail: they never skip. ``WatchedPage`` records what
  the page's console says: every error (a script error, a refused
  Content-Security-Policy, a missing asset) fails the test, except the error
  statuses a test said it expects (``expect_status(403)``). ``log_in`` signs
  in through the form.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, Playwright
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database
from loyalty.users import service as users_service
from tests.support.tenant import create_merchant

PASSWORD = "correct horse battery"
_CSRF_FIELD = re.compile(r'name="_csrf" value="([^"]*)"')

# --- staff users ---------------------------------------------------------------------


async def add_staff(
    database: Database,
    merchant_id: uuid.UUID,
    email: str,
    role: str = "admin",
    password: str = PASSWORD,
) -> uuid.UUID:
    async def work(connection: AsyncConnection) -> uuid.UUID:
        user = await users_service.create_user(
            connection, merchant_id=merchant_id, email=email, role=role, password=password
        )
        return user.id

    return await database.transaction(work)


async def disable_staff(database: Database, merchant_id: uuid.UUID, email: str) -> None:
    async def work(connection: AsyncConnection) -> None:
        await users_service.disable_user(connection, merchant_id, email)

    await database.transaction(work)


async def staff_emails(database: Database, merchant_id: uuid.UUID) -> list[str]:
    async with database.read() as connection:
        return [u.email for u in await users_service.list_users(connection, merchant_id)]


@dataclass
class Shop:
    """A merchant with one admin (password ``PASSWORD``)."""

    merchant_id: uuid.UUID
    admin_email: str
    admin_id: uuid.UUID
    database: Database

    async def add_user(
        self, email: str, role: str = "admin", password: str = PASSWORD
    ) -> uuid.UUID:
        return await add_staff(self.database, self.merchant_id, email, role, password)


async def create_shop(database: Database, unique_id: str, name: str | None = None) -> Shop:
    merchant_id = await create_merchant(database, name or f"Shop {unique_id}")
    email = f"owner-{unique_id}@example.com"
    admin_id = await add_staff(database, merchant_id, email)
    return Shop(merchant_id, email, admin_id, database)


# --- the admin over HTTP, without a browser -------------------------------------------


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF_FIELD.search(html)
    assert match is not None, "the page has no CSRF field"
    return match.group(1)


@dataclass
class AdminClient:
    """httpx keeping cookies as a browser does (``base_url`` decides http or https)."""

    client: httpx.AsyncClient

    async def login(self, email: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
        page = await self.client.get("/admin/login")
        assert page.status_code == 200, page.text
        data = {"email": email, "password": password, "_csrf": csrf_of(page.text), **extra}
        return await self.client.post("/admin/login", data=data)

    async def csrf(self, path: str = "/admin/users") -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def post(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        return await self.client.post(path, data=data, **kwargs)

    @property
    def session_cookie(self) -> str | None:
        return self.client.cookies.get("loyalty_admin", path="/admin")

    def set_session_cookie(self, value: str) -> None:
        host = self.client.base_url.host
        self.client.cookies.set("loyalty_admin", value, domain=host, path="/admin")


# ``admin_clients`` (tests/integration/admin/conftest.py): a new client per call.
ClientFactory = Callable[..., Awaitable[AdminClient]]


# --- a real browser ---------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 15_000
_STATUS_ERROR = re.compile(r"the server responded with a status of (\d{3})")


async def launch_chromium(playwright: Playwright) -> Browser:
    """Headless chromium, or a failed test saying why it did not start."""
    if not CHROMIUM.exists():  # noqa: ASYNC240 (one stat, before the browser starts)
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    try:
        return await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    except Error as error:
        pytest.fail(f"chromium did not start: {error}")


@dataclass
class WatchedPage:
    """A page and the console errors seen on it."""

    page: Page
    errors: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    @classmethod
    def watch(cls, page: Page) -> WatchedPage:
        watched = cls(page)
        page.on("console", watched._on_console)
        page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
        page.set_default_timeout(TIMEOUT_MS)
        return watched

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        status = _STATUS_ERROR.search(message.text)
        if status is not None and int(status.group(1)) in self.expected_statuses:
            return
        self.errors.append(f"{message.text} ({message.location.get('url', '')})")

    def expect_status(self, *statuses: int) -> None:
        """This test loads pages answered with these statuses on purpose (403…): call it
        before the navigation (the console reports them as errors)."""
        self.expected_statuses.update(statuses)

    def assert_no_errors(self) -> None:
        assert self.errors == [], "console errors:\n" + "\n".join(self.errors)


async def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a person would (the page's base URL is the server)."""
    await page.goto("/admin/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


def screenshots_dir() -> Path:
    """Where the browser tests save their screenshots: the README's own
    (``docs/screenshots``) when ``LOYALTY_UPDATE_SCREENSHOTS=1``, else a temporary
    directory (a test run leaves the checkout as it was)."""
    if os.environ.get("LOYALTY_UPDATE_SCREENSHOTS") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    return Path(tempfile.gettempdir()) / "loyalty-screenshots"
