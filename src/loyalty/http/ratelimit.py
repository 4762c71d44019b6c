"""Rate limits per API key: a sliding window, shared through Redis when configured.

Every request made with a key counts against that key's limit (its own
``--rate-limit``, else ``LOYALTY_RATE_LIMIT_DEFAULT``, 100/minute): at most N
in any window of the period (the ``limits`` library's moving window). The
counts live in this process's memory by default (a deque per key); with ``LOYALTY_REDIS_URL``
every ``loyalty serve`` worker shares them, so the budget is per key, not per
process. Every response to a request with a key carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the oldest
request of the window leaves it); a refused one is a 429 ``rate_limited``
with ``Retry-After``. If Redis cannot be reached the request is let through
(and logged): a limiter outage never takes the API down.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MovingWindowSupport, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from loyalty.auth.schemas import Principal
from loyalty.http.surface import app_surface
from loyalty.metrics import RATE_LIMITED
from loyalty.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> list[tuple[str, str]]:
        headers = [
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(self.reset_seconds)),
        ]
        if not self.allowed:
            headers.append(("retry-after", str(max(self.reset_seconds, 1))))
        return headers


class ProcessMemoryStorage(Storage, MovingWindowSupport):
    """The moving window in this process's memory, at O(1) per request.

    (The ``limits`` library's own memory storage copies every key's list and
    hops to a thread to expire entries, which on a busy key cost a quarter of
    the read throughput.) One deque of timestamps per key: a request drops
    the timestamps older than the window from the left and appends its own on
    the right. Single-threaded asyncio: no await inside, so no lock needed.
    """

    STORAGE_SCHEME = ["loyalty+memory"]
    SWEEP_EVERY = 10_000

    def __init__(self, uri: str | None = None, **options: float | str | bool) -> None:
        super().__init__(uri)
        self.windows: dict[str, deque[float]] = {}
        self.counters: dict[str, tuple[int, float]] = {}
        self._since_sweep = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    def _window(self, key: str, expiry: float, now: float) -> deque[float]:
        window = self.windows.setdefault(key, deque())
        cutoff = now - expiry
        while window and window[0] <= cutoff:
            window.popleft()
        return window

    def _sweep(self, now: float, expiry: float) -> None:
        self._since_sweep += 1
        if self._since_sweep < self.SWEEP_EVERY:
            return
        self._since_sweep = 0
        for key in [k for k, w in self.windows.items() if not w or w[-1] <= now - expiry]:
            del self.windows[key]

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = time.time()
        self._sweep(now, expiry)
        window = self._window(key, expiry, now)
        if len(window) + amount > limit:
            return False
        window.extend([now] * amount)
        return True

    def hit_now(self, key: str, limit: int, expiry: int) -> tuple[bool, float, int]:
        """``acquire_entry`` then ``get_moving_window`` in one step, with no await: whether
        the request is allowed, the window's start and the requests in it."""
        now = time.time()
        self._sweep(now, expiry)
        window = self._window(key, expiry, now)
        allowed = len(window) + 1 <= limit
        if allowed:
            window.append(now)
        return allowed, (window[0] if window else now), len(window)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        window = self._window(key, expiry, now)
        return (window[0] if window else now), len(window)

    # Fixed-window counters (not used by the moving window; here for completeness).
    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        count, until = self.counters.get(key, (0, now + expiry))
        if until <= now:
            count, until = 0, now + expiry
        self.counters[key] = (count + amount, until)
        return count + amount

    async def get(self, key: str) -> int:
        count, until = self.counters.get(key, (0, 0.0))
        return count if until > time.time() else 0

    async def get_expiry(self, key: str) -> float:
        return self.counters.get(key, (0, time.time()))[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        cleared = len(self.windows) + len(self.counters)
        self.windows.clear()
        self.counters.clear()
        return cleared

    async def clear(self, key: str) -> None:
        self.windows.pop(key, None)
        self.counters.pop(key, None)


def storage_for(settings: Settings) -> Storage:
    if settings.redis_url is None:
        return ProcessMemoryStorage()
    url = settings.redis_url
    if not url.startswith("async+"):
        url = "async+" + url
    storage = storage_from_string(url, implementation="redispy", key_prefix=settings.redis_prefix)
    assert isinstance(storage, Storage), "an async+ URL gives an async storage"
    return storage


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.storage = storage_for(settings)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.default = settings.rate_limit_default
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, text: str) -> RateLimitItem:
        item = self._items.get(text)
        if item is None:
            item = self._items[text] = parse(text)
        return item

    async def check(self, principal: Principal) -> Decision | None:
        """Count one request of this key; None when the limiter is unreachable."""
        item = self._item(principal.rate_limit or self.default)
        key = principal.key_id.hex
        if isinstance(self.storage, ProcessMemoryStorage):
            # The library's moving window, computed in one call (every request pays it).
            expiry = item.get_expiry()
            allowed, start, count = self.storage.hit_now(
                f"{item.amount}/{expiry}/{key}", item.amount, expiry
            )
            reset = max(0, math.ceil(start + expiry - time.time()))
            return Decision(allowed, item.amount, max(0, item.amount - count), reset)
        try:
            allowed = await self.strategy.hit(item, key)
            stats = await self.strategy.get_window_stats(item, key)
        except Exception as error:  # a limiter outage must not take the API down
            log.warning("rate_limiter_unavailable", error=repr(error))
            return None
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, item.amount, stats.remaining, reset)


def rate_limit_body(app: Litestar, decision: Decision, path: str) -> bytes:
    """The 429 body, in the error shape of the surface the request used."""
    message = f"Too many requests for this API key; retry in {decision.reset_seconds} s."
    details = {"limit": decision.limit, "retry_after": max(decision.reset_seconds, 1)}
    return app_surface(app, path).error_body(429, "rate_limited", message, details, path)


def encoded_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in decision.headers()]


def with_headers(
    headers: Iterable[tuple[bytes, bytes]], added: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``added`` set (replacing any of the same names)."""
    names = {name for name, _ in added}
    return [(name, value) for name, value in headers if name.lower() not in names] + added


async def refusal(send: Send, app: Litestar, decision: Decision, path: str) -> None:
    """Answer 429 ``rate_limited`` with the limit's headers and ``Retry-After``."""
    RATE_LIMITED.inc()
    body = rate_limit_body(app, decision, path)
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *encoded_headers(decision),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def rate_limit_middleware(app: ASGIApp) -> ASGIApp:
    """After authentication: count the request against its key, add the headers."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("user")
        if scope["type"] != ScopeType.HTTP or not isinstance(principal, Principal):
            await app(scope, receive, send)
            return
        litestar_app = scope["litestar_app"]
        limiter: RateLimiter | None = getattr(litestar_app.state, "rate_limiter", None)
        decision = None if limiter is None else await limiter.check(principal)
        if decision is None:
            await app(scope, receive, send)
            return
        if not decision.allowed:
            await refusal(send, litestar_app, decision, scope["path"])
            return
        added = encoded_headers(decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_headers(message.get("headers", ()), added)
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
