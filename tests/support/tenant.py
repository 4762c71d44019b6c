"""A merchant with an API key, and what tests read back about it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.auth import service as auth_service
from loyalty.db.engine import Database
from loyalty.db.tables import events
from loyalty.merchants import service as merchants_service


@dataclass
class Tenant:
    """A merchant with an all-scopes API key, and helpers to call the API as it."""

    merchant_id: uuid.UUID
    token: str
    client: httpx.AsyncClient
    database: Database

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.client.post(path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return await self.client.get(path, headers=headers, **kwargs)

    async def enrol(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        response = await self.post(
            "/api/v1/public/customers", json={"customer_id": customer_id, **fields}
        )
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def adjust(
        self, customer_id: str, points: Any, description: str = "test", **extra: Any
    ) -> httpx.Response:
        return await self.post(
            "/api/v1/public/customers/transactions",
            params={"customer_id": customer_id},
            json={"points": points, "description": description, **extra},
        )

    async def customer(self, customer_id: str) -> dict[str, Any]:
        response = await self.get("/api/v1/public/customers", params={"customer_id": customer_id})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    async def new_key(self, scopes: str) -> str:
        return await create_key(self.database, self.merchant_id, scopes)


async def create_merchant(database: Database, name: str = "Test shop") -> uuid.UUID:
    async def work(connection: AsyncConnection) -> uuid.UUID:
        merchant = await merchants_service.create_merchant(connection, name)
        return merchant.id

    return await database.transaction(work)


async def create_key(database: Database, merchant_id: uuid.UUID, scopes: str = "all") -> str:
    async def work(connection: AsyncConnection) -> str:
        key = await auth_service.create_key(connection, merchant_id=merchant_id, scopes=scopes)
        return key.token

    return await database.transaction(work)


async def event_types(tenant: Tenant) -> list[str]:
    """The merchant's events, oldest first."""
    async with tenant.database.read() as connection:
        rows = await connection.execute(
            select(events.c.type)
            .where(events.c.merchant_id == tenant.merchant_id)
            .order_by(events.c.id)
        )
        return list(rows.scalars().all())
