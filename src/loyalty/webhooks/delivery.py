"""Delivering events to webhook endpoints (Standard Webhooks), at least once.

A ``Deliverer`` runs in ``loyalty worker`` (and in ``loyalty serve`` when it
runs the scheduler in-process, the SQLite default). Its loop:

1. **Relay**: number every merchant's newly committed events and schedule a
   first attempt to each matching endpoint (``loyalty.webhooks.relay``); the
   first attempts there is room for are leased to this deliverer in the same
   transaction and sent at once (no claim).
2. **Claim** due attempts: ``FOR UPDATE SKIP LOCKED`` on Postgres (the write
   lock on SQLite), so several workers never take the same attempt, and a
   lease (``locked_until``) so that an attempt is made once: a worker killed
   mid-delivery loses nothing, its lease lapses and the attempt is made
   again (the receiver deduplicates on ``webhook-id``).
3. **Send** each attempt on one shared HTTP client
   (``loyalty.webhooks.transport``: connection reuse, the SSRF guard at connect
   time, no redirects), at most ``per_endpoint`` at a time per endpoint and
   ``concurrency`` in all, so a slow or dead endpoint
   never holds up the others; a whole attempt is bounded by the timeout and
   reads at most 1 KiB of the answer.
4. **Record** outcomes in batches: only a 2xx succeeds; a failure schedules
   the next attempt (``RETRY_STEPS`` ±20 %, ``Retry-After`` honoured up to
   twice the step); 410 disables the endpoint at once, five days of failure
   without a success disable it with a ``webhook_endpoint.disabled`` event.

It sleeps until woken by a commit (``loyalty.db.wakeup``: in-process, or on
Postgres ``NOTIFY loyalty_events`` through the process's LISTEN connection,
the one that also hears key revocations), a free slot, or ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from loyalty.db.engine import Database, is_unavailable
from loyalty.db.types import utc_now
from loyalty.events import repository as events
from loyalty.events.repository import STAMP_BATCH_MAX
from loyalty.events.types import ENDPOINT_DISABLED
from loyalty.ids import new_id
from loyalty.metrics import webhook_attempted
from loyalty.settings import Settings
from loyalty.webhooks import repository
from loyalty.webhooks.relay import HandOff, Leased, stamp_and_fan_out
from loyalty.webhooks.service import endpoint_view, record_change
from loyalty.webhooks.signing import signature_header
from loyalty.webhooks.transport import DeliveryClient, DeliveryError
from loyalty.webhooks.urls import WebhookURLError, check_url_syntax

log = structlog.get_logger(__name__)

# After attempt n fails, attempt n + 1 follows RETRY_STEPS[n - 1] later.
RETRY_STEPS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
JITTER = 0.2
DISABLE_AFTER = timedelta(days=5)
# A claim is held this long beyond the timeout (queueing, recording the outcome).
LEASE_MARGIN = timedelta(seconds=10)
USER_AGENT = "loyalty-webhooks/1"
SQLITE_RELAY_DELAY_SECONDS = 0.1
_encoder = msgspec.json.Encoder()


class _Body(msgspec.Struct):
    """The event object, its ``data`` as stored (already JSON)."""

    id: uuid.UUID
    type: str
    timestamp: datetime
    sequence: int
    customer_id: str | None
    data: msgspec.Raw
    actor: str


@dataclass(slots=True)
class _Claimed:
    merchant_id: uuid.UUID
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    trigger: str
    url: str
    secrets: tuple[str, ...]
    body: bytes
    # When the event was committed (the delivery lag of a first attempt).
    event_created_at: datetime


@dataclass(slots=True)
class Outcome:
    claimed: _Claimed
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    body: str | None
    error: str | None
    retry_after: float | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(
    attempt: int, retry_after: float | None, jitter: Callable[[], float] = random.random
) -> timedelta | None:
    """When attempt ``attempt + 1`` follows a failed ``attempt`` (None: no more)."""
    if attempt > len(RETRY_STEPS):
        return None
    step = RETRY_STEPS[attempt - 1].total_seconds()
    delay = step * (1 + JITTER * (2 * jitter() - 1))
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, 2 * step)
    return timedelta(seconds=delay)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


async def _stamp(
    connection: AsyncConnection, *, merchant_id: uuid.UUID, now: datetime, hand_off: HandOff | None
) -> tuple[int, list[Leased]]:
    return await stamp_and_fan_out(connection, merchant_id, now, hand_off)


def _first_attempt_lag(item: _Claimed, attempted_at: datetime) -> float | None:
    """Seconds from the event's commit to this attempt, for a first scheduled attempt."""
    if item.attempt != 1 or item.trigger != "scheduled":
        return None
    created_at = item.event_created_at
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return (attempted_at - created_at).total_seconds()


class Deliverer:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        concurrency: int = 256,
        per_endpoint: int = 32,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.database = database
        self.settings = settings
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.jitter = jitter
        self.timeout_seconds = settings.webhook_timeout_seconds
        self.client = DeliveryClient(
            settings.webhook_allowed_networks, idle_per_origin_max=per_endpoint
        )
        self._in_flight: dict[uuid.UUID, int] = {}
        # Claims and records are batched: the loop is woken after this many
        # attempts have finished (or when none is left in flight).
        self._batch = max(1, min(per_endpoint, concurrency) // 2)
        self._finished_since_claim = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._outcomes: list[Outcome] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._slot_freed: asyncio.Event | None = None
        self._recording: asyncio.Task[None] | None = None
        # Attempts made (``run_once`` reports them).
        self.sent = 0

    # Lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop claiming, let attempts in flight finish (each is bounded by the
        timeout) and record them."""
        self._stopping = True
        self.database.events_wakeup.wake()
        if self._slot_freed is not None:
            self._slot_freed.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def run_once(self) -> int:
        """Relay, then send everything due now and record it (``worker --once``, tests).
        Returns how many attempts were made."""
        sent = self.sent
        while True:
            before = self.sent
            await self.relay()
            await self.claim()
            await self._drain()
            if self.sent == before:
                return self.sent - sent

    async def _run(self) -> None:
        """Two loops: the relay (woken by commits) and the claims (woken by the
        relay's new attempts and by finished ones), so neither waits on the other."""
        self._slot_freed = asyncio.Event()
        relay = asyncio.get_running_loop().create_task(self._relay_loop())
        try:
            while not self._stopping:
                claimed = 0
                try:
                    claimed = await self.claim()
                    self._record_in_background()
                except Exception as error:
                    self._log_failure(error)
                if claimed >= self._batch and self._free() >= self._batch:
                    continue  # more may be due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), self.poll_seconds)
                self._slot_freed.clear()
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        await self._drain()

    async def _relay_loop(self) -> None:
        while not self._stopping:
            relayed = 0
            try:
                relayed = await self.relay()
            except Exception as error:
                self._log_failure(error)
            if relayed and self._slot_freed is not None:
                self._slot_freed.set()  # new first attempts: claim them
            if relayed < STAMP_BATCH_MAX:
                await self.database.events_wakeup.wait(self.poll_seconds)
                if self.database.is_sqlite:
                    # One writer: numbering many batches' events in one transaction
                    # keeps the ledger's commits (and fsyncs) from doubling.
                    await asyncio.sleep(SQLITE_RELAY_DELAY_SECONDS)

    def _log_failure(self, error: Exception) -> None:
        if is_unavailable(error):
            log.warning("webhook_delivery_database_unavailable", error=str(error))
        else:
            log.exception("webhook_delivery_pass_failed", exc_info=error)

    def _record_in_background(self) -> None:
        """Outcomes are written beside the next claim, not before it."""
        if self._outcomes and (self._recording is None or self._recording.done()):
            self._recording = asyncio.get_running_loop().create_task(self._record_logged())

    async def _record_logged(self) -> None:
        try:
            await self.record()
        except Exception as error:  # kept: written on the next pass
            log.warning("webhook_delivery_record_failed", error=str(error))

    async def _drain(self) -> None:
        while self._sending:
            await asyncio.gather(*list(self._sending), return_exceptions=True)
        if self._recording is not None:
            await self._recording
        await self.record()

    # Relay --------------------------------------------------------------------------

    async def relay(self) -> int:
        """Number each merchant's new events (a batch per merchant) and schedule
        their first attempts, sending at once those there is room for (handed
        off, leased to this deliverer: no claim); returns how many events were
        numbered (a full batch means more may be waiting)."""
        total = 0
        after: uuid.UUID | None = None
        while True:
            async with self.database.read() as connection:
                after = await events.next_merchant_with_unstamped(connection, after)
            if after is None:
                return total
            now = self.clock()
            hand_off = None
            if not self._stopping and self._free() > 0:
                hand_off = HandOff(
                    lease_until=self._lease_until(now),
                    free=self._free(),
                    per_endpoint=self.per_endpoint,
                    rooms={e: self.per_endpoint - n for e, n in self._in_flight.items()},
                )
            numbered, leased = await self.database.transaction(
                partial(_stamp, merchant_id=after, now=now, hand_off=hand_off)
            )
            total += numbered
            # Committed: their events have their numbers for good.
            self._dispatch([self._claimed(row, now) for row in leased])

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.timeout_seconds) + LEASE_MARGIN

    # Claiming -----------------------------------------------------------------------

    def _free(self) -> int:
        return self.concurrency - len(self._sending)

    async def claim(self) -> int:
        """Take due attempts (as many as there are free slots) and start sending them."""
        free = self._free()
        if free <= 0 or self._stopping:
            return 0
        now = self.clock()
        lease_until = self._lease_until(now)

        rooms = {e: self.per_endpoint - n for e, n in self._in_flight.items()}
        if self.database.is_sqlite:
            rows = await self.database.transaction(
                partial(self._take, now=now, free=free, rooms=rooms, lease_until=lease_until)
            )
        else:
            rows = await repository.claim_postgres(
                self.database,
                now,
                free=free,
                per_endpoint=self.per_endpoint,
                rooms=rooms,
                lease_until=lease_until,
            )
        self._finished_since_claim = 0
        return self._dispatch([self._claimed(row, now) for row in rows])

    def _dispatch(self, claimed: list[_Claimed]) -> int:
        for item in claimed:
            self._in_flight[item.endpoint_id] = self._in_flight.get(item.endpoint_id, 0) + 1
            task = asyncio.get_running_loop().create_task(self._send(item))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(claimed)

    async def _take(
        self,
        connection: AsyncConnection,
        *,
        now: datetime,
        free: int,
        rooms: dict[uuid.UUID, int],
        lease_until: datetime,
    ) -> list[Any]:
        """The claim on SQLite (the write lock makes it exclusive)."""
        busy = [endpoint for endpoint, room in rooms.items() if room <= 0]
        candidates = await repository.claim_candidates(connection, now, free * 2, busy)
        chosen: list[tuple[uuid.UUID, uuid.UUID]] = []
        taking: dict[uuid.UUID, int] = {}
        for row in candidates:
            taken = taking.get(row.endpoint_id, 0)
            if taken >= rooms.get(row.endpoint_id, self.per_endpoint):
                continue
            taking[row.endpoint_id] = taken + 1
            chosen.append((row.merchant_id, row.id))
            if len(chosen) == free:
                break
        return await repository.lease(connection, chosen, lease_until)

    def _claimed(self, row: Any, now: datetime) -> _Claimed:
        secrets = [row.secret]
        if (
            row.previous_secret is not None
            and row.previous_secret_expires_at is not None
            and row.previous_secret_expires_at > now
        ):
            secrets.append(row.previous_secret)
        body = _encoder.encode(
            _Body(
                id=row.event_id,
                type=row.type,
                timestamp=row.created_at,
                sequence=row.sequence,
                customer_id=row.customer_ref,
                data=msgspec.Raw(row.payload.encode()),
                actor=row.actor,
            )
        )
        return _Claimed(
            merchant_id=row.merchant_id,
            id=row.id,
            endpoint_id=row.endpoint_id,
            event_id=row.event_id,
            event_type=row.type,
            attempt=row.attempt,
            trigger=row.trigger,
            url=row.url,
            secrets=tuple(secrets),
            body=body,
            event_created_at=row.created_at,
        )

    # Sending ------------------------------------------------------------------------

    async def _send(self, item: _Claimed) -> None:
        attempted_at = self.clock()
        started = time.perf_counter()
        status_code: int | None = None
        body: str | None = None
        error: str | None = None
        retry_after: float | None = None
        message_id = str(item.event_id)
        timestamp = int(attempted_at.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(item.secrets, message_id, timestamp, item.body),
        }
        try:
            check_url_syntax(item.url, self.settings.webhook_allowed_networks)
            async with asyncio.timeout(self.timeout_seconds):
                status_code, body, retry_after = await self._post(item.url, item.body, headers)
        except WebhookURLError as refused:
            error = f"refused URL: {refused}"
        except TimeoutError:
            error = f"timed out after {self.timeout_seconds:g} s"
        except (DeliveryError, OSError) as failure:
            error = (str(failure) or type(failure).__name__)[:500]
        finally:
            self._in_flight[item.endpoint_id] -= 1
            if not self._in_flight[item.endpoint_id]:
                del self._in_flight[item.endpoint_id]
        if status_code is not None and 300 <= status_code < 400:
            error = "redirects are not followed"
        duration_ms = int((time.perf_counter() - started) * 1000)
        self.sent += 1
        outcome = Outcome(item, attempted_at, status_code, duration_ms, body, error, retry_after)
        webhook_attempted(outcome.succeeded, _first_attempt_lag(item, attempted_at))
        self._outcomes.append(outcome)
        # Enough slots are free (or all): the loop claims more and records these.
        self._finished_since_claim += 1
        if self._slot_freed is not None and (
            self._finished_since_claim >= self._batch or len(self._sending) <= 1
        ):
            self._slot_freed.set()

    async def _post(
        self, url: str, content: bytes, headers: dict[str, str]
    ) -> tuple[int, str, float | None]:
        reply = await self.client.post(url, content, headers)
        # At most 1 KiB was read: the rest of a large answer never is.
        text = reply.body.decode("utf-8", errors="replace")
        retry_after = parse_retry_after(reply.headers.get("retry-after"), self.clock())
        return reply.status, text, retry_after

    # Recording ----------------------------------------------------------------------

    async def record(self) -> None:
        """Write the outcomes of finished attempts (one transaction for all)."""
        if not self._outcomes:
            return
        outcomes, self._outcomes = self._outcomes, []
        try:
            await self.database.transaction(lambda connection: self._write(connection, outcomes))
        except BaseException:
            self._outcomes = outcomes + self._outcomes  # kept for the next pass
            raise

    async def _write(self, connection: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
        now = self.clock()
        keys = sorted({(o.claimed.merchant_id, o.claimed.endpoint_id) for o in outcomes})
        endpoints = {
            (row.merchant_id, row.id): row
            for row in await repository.lock_endpoints(connection, keys)
        }
        await repository.finish_attempts(
            connection,
            [
                {
                    "m": o.claimed.merchant_id,
                    "i": o.claimed.id,
                    "status": "succeeded" if o.succeeded else "failed",
                    "attempted_at": o.attempted_at,
                    "response_status": o.status_code,
                    "response_duration_ms": o.duration_ms,
                    "response_body": o.body,
                    "error": o.error,
                }
                for o in outcomes
            ],
        )
        retries: list[dict[str, Any]] = []
        succeeded: set[tuple[uuid.UUID, uuid.UUID]] = set()
        failed: set[tuple[uuid.UUID, uuid.UUID]] = set()
        gone: set[tuple[uuid.UUID, uuid.UUID]] = set()
        for o in outcomes:
            key = (o.claimed.merchant_id, o.claimed.endpoint_id)
            endpoint = endpoints.get(key)
            if endpoint is None:
                continue  # deleted meanwhile
            if o.succeeded:
                succeeded.add(key)
                continue
            failed.add(key)
            if o.status_code == 410:
                gone.add(key)
                continue  # disabled below: no retry
            if o.claimed.trigger != "scheduled" or not endpoint.active:
                continue
            delay = retry_delay(o.claimed.attempt, o.retry_after, self.jitter)
            if delay is None:
                continue
            retries.append(
                {
                    "merchant_id": o.claimed.merchant_id,
                    "id": new_id(),
                    "endpoint_id": o.claimed.endpoint_id,
                    "event_id": o.claimed.event_id,
                    "event_type": o.claimed.event_type,
                    "attempt": o.claimed.attempt + 1,
                    "trigger": "scheduled",
                    "status": "pending",
                    "scheduled_at": now + delay,
                }
            )
        # Five days failing without a success: disabled, no retry scheduled.
        worn_out = {
            key
            for key in failed - succeeded - gone
            if endpoints[key].active
            and endpoints[key].failing_since is not None
            and now - endpoints[key].failing_since >= DISABLE_AFTER
        }
        await repository.insert_attempts(
            connection,
            [r for r in retries if (r["merchant_id"], r["endpoint_id"]) not in worn_out],
        )
        # An endpoint that succeeded in this batch is not failing, whatever else failed.
        await repository.set_failing(connection, sorted(succeeded), None)
        await repository.set_failing(connection, sorted(failed - succeeded), now)
        # A 410 disables at once, whatever else the endpoint answered in this batch.
        for key in sorted(gone):
            if endpoints[key].active:
                await disable(connection, key, "the endpoint answered 410 Gone", now)
        for key in sorted(worn_out):
            await disable(connection, key, "no successful delivery for 5 days", now)


async def disable(
    connection: AsyncConnection, key: tuple[uuid.UUID, uuid.UUID], reason: str, now: datetime
) -> None:
    """Disable an endpoint: nothing more is sent to it (its pending attempts fail)
    and a ``webhook_endpoint.disabled`` event tells the merchant's other endpoints."""
    merchant_id, endpoint_id = key
    await repository.update_endpoint(
        connection,
        merchant_id,
        endpoint_id,
        {"active": False, "disabled_reason": reason, "updated_at": now},
    )
    await repository.fail_pending(connection, merchant_id, endpoint_id, "endpoint disabled", now)
    row = await repository.get_endpoint(connection, merchant_id, endpoint_id)
    await events.record(
        connection,
        merchant_id=merchant_id,
        event_type=ENDPOINT_DISABLED,
        subject_id=endpoint_id,
        payload={"webhook": msgspec.to_builtins(endpoint_view(row)), "reason": reason},
        now=now,
    )
    # The audit trail's actor is the worker's: system.
    await record_change(
        connection,
        merchant_id,
        endpoint_view(row),
        "disabled",
        {"active": False, "disabled_reason": reason},
        now,
    )
    log.warning("webhook_endpoint_disabled", endpoint_id=str(endpoint_id), reason=reason)
