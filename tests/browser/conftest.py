"""Fixtures of the browser tests (helpers: ``tests.support.browser``).

``admin_server``: a real ``loyalty serve`` with two workers (so sessions must
live in the database) on each test database, SQLite and Postgres.
``chromium``: Debian's chromium driven by Playwright, started once; the
tests fail (never skip) if it cannot start. ``page``: a ``WatchedPage`` in a
fresh browser context whose base URL is the server; a console error fails the
test. ``shop``: a merchant with an admin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Dialog, async_playwright

from loyalty.db.engine import Database
from tests.support.browser import Shop, WatchedPage, create_shop, launch_chromium
from tests.support.server import running_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith("tests/browser/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def admin_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # One server per module, stopped at its end: on SQLite it runs the scheduled
    # jobs itself (numbering events, purges), which must not run under the other
    # tests sharing the session's database.
    # Webhook endpoints added in the browser point at receivers on 127.0.0.1.
    with running_server(
        database_url,
        tmp_path_factory.mktemp("admin-server"),
        workers=2,
        extra_environment={"LOYALTY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"},
    ) as url:
        yield url


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        yield browser
        await browser.close()


async def accept(dialog: Dialog) -> None:
    """``<form data-confirm>`` asks with window.confirm: say yes."""
    await dialog.accept()


@pytest.fixture
async def page(chromium: Browser, admin_server: str) -> AsyncIterator[WatchedPage]:
    context = await chromium.new_context(base_url=admin_server)
    watched = WatchedPage.watch(await context.new_page())
    watched.page.on("dialog", accept)
    yield watched
    await context.close()
    watched.assert_no_errors()


@pytest.fixture
async def shop(database: Database, unique_id: str) -> Shop:
    return await create_shop(database, unique_id, f"Browser shop {unique_id}")
