"""Fixtures of the admin's tests through httpx against the ASGI app (helpers:
``tests.support.browser``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar

from loyalty.db.engine import Database
from tests.support.browser import AdminClient, ClientFactory, Shop, create_shop


@pytest.fixture
async def admin_clients(app: Litestar) -> AsyncIterator[ClientFactory]:
    """Make as many independent cookie-keeping clients as a test needs
    (``await admin_clients("https://loyalty.test")`` for one over https)."""
    clients: list[httpx.AsyncClient] = []

    async def make(base_url: str = "http://loyalty.test") -> AdminClient:
        transport = httpx.ASGITransport(app=cast("Any", app))
        client = httpx.AsyncClient(transport=transport, base_url=base_url)
        clients.append(client)
        return AdminClient(client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def admin_client(admin_clients: ClientFactory) -> AdminClient:
    return await admin_clients()


@pytest.fixture
async def shop(database: Database, unique_id: str) -> Shop:
    """A merchant with one admin user."""
    return await create_shop(database, unique_id)


@pytest.fixture
async def signed_in(admin_client: AdminClient, shop: Shop) -> AdminClient:
    """A client signed in as the shop's admin."""
    response = await admin_client.login(shop.admin_email)
    assert response.status_code == 303, response.text
    return admin_client
