"""Coalescing of concurrent point reads into one query (Postgres).

Many requests reading one row each (a customer by its platform id) cost a
round trip and a pool checkout apiece. A ``ReadCoalescer`` gathers the keys
requested while its previous query runs and fetches them all with one
``= ANY``-style query over ``unnest``: under load one round trip serves
dozens of requests; alone, a request pays nothing extra. Each query is a
fresh statement, so every read sees data committed before it was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

FetchMany = Callable[[Sequence[Any]], Awaitable[dict[Any, Any]]]


class ReadCoalescer(Generic[K]):
    def __init__(self, fetch_many: FetchMany, *, batch_size_max: int = 256) -> None:
        self._fetch_many = fetch_many
        self._batch_size_max = batch_size_max
        self._waiting: dict[K, list[asyncio.Future[Any]]] = {}
        self._running = False

    async def get(self, key: K) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self._batch_size_max]
                futures = {key: self._waiting.pop(key) for key in keys}
                try:
                    rows = await self._fetch_many(keys)
                except Exception as error:
                    for waiters in futures.values():
                        for future in waiters:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for key, waiters in futures.items():
                    for future in waiters:
                        if not future.done():
                            future.set_result(rows.get(key))
        finally:
            self._running = False
