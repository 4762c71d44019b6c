"""Waking the webhook deliverers when events commit.

Every transaction that wrote events pokes its database's ``EventsWakeup``
after the commit (the ledger's stores after each batch, ``Database.transaction``
when a service recorded an event). A poke wakes a deliverer of the same
process at once (the SQLite default, where ``loyalty serve`` delivers) and, on
Postgres, sends one ``NOTIFY loyalty_events``, which every process's LISTEN
connection (``Database.start``) turns into a wake-up of its own deliverer.
Pokes are coalesced: at most one NOTIFY per ``debounce_seconds`` per
process, whatever the commit rate, so the write path pays nothing measurable
for it. Deliverers also look every ``poll_seconds`` in case a notification
was lost (a listener reconnecting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

CHANNEL = "loyalty_events"
# Set in a SQLAlchemy connection's ``info`` by a transaction that wrote events.
EVENTS_WRITTEN = "loyalty_events_written"

log = structlog.get_logger(__name__)


class EventsWakeup:
    def __init__(
        self,
        notify: Callable[[], Awaitable[None]] | None = None,
        *,
        debounce_seconds: float = 0.01,
    ) -> None:
        self._notify = notify
        self._debounce_seconds = debounce_seconds
        self._event: asyncio.Event | None = None
        self._sending: asyncio.Task[None] | None = None

    def _flag(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def poke(self) -> None:
        """Events have committed: wake this process's deliverer, tell the others."""
        self.wake()
        if self._notify is not None and (self._sending is None or self._sending.done()):
            self._sending = asyncio.get_running_loop().create_task(self._send())

    def wake(self) -> None:
        """Wake this process's deliverer (also called on a NOTIFY from another process)."""
        self._flag().set()

    async def wait(self, timeout_seconds: float) -> bool:
        """Wait for a wake-up (True) or the timeout (False)."""
        flag = self._flag()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(flag.wait(), timeout_seconds)
        woken = flag.is_set()
        flag.clear()
        return woken

    async def _send(self) -> None:
        await asyncio.sleep(self._debounce_seconds)
        assert self._notify is not None
        try:
            await self._notify()
        except Exception as error:  # the deliverers' poll catches up
            log.warning("events_notify_failed", error=str(error))

    async def close(self) -> None:
        if self._sending is not None and not self._sending.done():
            with contextlib.suppress(Exception):
                await self._sending
