"""Prometheus metrics: the metric objects, the helpers that move them, and their text.

Every figure a process counts lives in prometheus-client's objects below. In a
single process they are in the default registry. ``loyalty serve --workers N``
sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh directory before its workers start
(``loyalty.metrics_directory``): each worker then keeps its figures in files
there and ``exposition()`` sums them over every worker, whichever one answers
the scrape. The labels are bounded: route templates (never raw paths), method,
status, job names and fixed outcome words; never a customer, key or email.

Nothing here imports Litestar: the HTTP endpoint is ``loyalty.http.metrics``,
the worker's own listener is ``serve_metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer

from loyalty.metrics_directory import MULTIPROC_ENV

log = structlog.get_logger(__name__)

# The classic text format (what generate_latest writes), read by every Prometheus.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# No *_created series (they double the output; multiprocess mode has none anyway).
disable_created_metrics()  # type: ignore[no-untyped-call]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- HTTP ------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "loyalty_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "loyalty_http_request_duration_seconds",
    "Time from a request's arrival to its answer's end, by method and route template.",
    ["method", "route"],
    buckets=_SECONDS,
)
RATE_LIMITED = Counter(
    "loyalty_rate_limited", "Requests refused with 429 by the per-key rate limit."
)
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# --- ledger ----------------------------------------------------------------------

LEDGER_BATCH_SIZE = Histogram(
    "loyalty_ledger_batch_size",
    "Movements per committed ledger batch (one transaction).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
LEDGER_BATCH_DURATION = Histogram(
    "loyalty_ledger_batch_duration_seconds",
    "Time to commit one ledger batch, retries included.",
    buckets=_SECONDS,
)
LEDGER_QUEUE_DEPTH = Gauge(
    "loyalty_ledger_queue_depth",
    "Movements waiting for a ledger batch (summed over live processes).",
    multiprocess_mode="livesum",
)
LEDGER_MOVEMENTS = Counter(
    "loyalty_ledger_movements",
    "Ledger movements by outcome: applied, refused (a 4xx answer), replayed "
    "(an idempotent retry), failed (database unavailable or an error).",
    ["outcome"],
)
LEDGER_OUTCOMES = ("applied", "refused", "replayed", "failed")

# --- webhooks --------------------------------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "loyalty_webhook_deliveries",
    "Webhook delivery attempts made, by outcome (succeeded: a 2xx answer).",
    ["outcome"],
)
WEBHOOK_OUTCOMES = ("succeeded", "failed")
WEBHOOK_BACKLOG = Gauge(
    "loyalty_webhook_backlog",
    "Webhook deliveries due and not yet made (pending attempts scheduled for now or "
    "earlier), read from the database.",
    multiprocess_mode="livemostrecent",
)
WEBHOOK_LAG = Histogram(
    "loyalty_webhook_delivery_lag_seconds",
    "Time from an event's commit to its first delivery attempt.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
# The backlog is read at most this often (a scrape and the deliverer's loop share it).
BACKLOG_REFRESH_SECONDS = 5.0

# --- jobs and imports ------------------------------------------------------------

JOB_RUNS = Counter(
    "loyalty_jobs_runs",
    "Scheduled job runs, by job and outcome (ok or failed).",
    ["job", "outcome"],
)
IMPORT_ROWS = Counter(
    "loyalty_import_rows",
    "Rows of customer imports, by outcome (applied, already_applied, failed).",
    ["outcome"],
)
IMPORT_OUTCOMES = ("applied", "already_applied", "failed")

# Every fixed outcome is exported from the start (at 0), so rates and alerts
# work before the first event.
for _outcome in LEDGER_OUTCOMES:
    LEDGER_MOVEMENTS.labels(_outcome)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)
for _outcome in IMPORT_OUTCOMES:
    IMPORT_ROWS.labels(_outcome)


# --- helpers ---------------------------------------------------------------------


class HttpRecorder:
    """Counts requests in two series at the cost of a few additions each.

    prometheus-client's own ``inc``/``observe`` take a lock each (and write a
    file in multiprocess mode): a few microseconds a request, some 10 % of a
    ``/healthz``. So a request only adds to a per-(method, route, status) row of
    plain numbers (count, sum, its bucket); the rows are added to the metrics at
    most ``FLUSH_SECONDS`` later (a timer on the event loop) and before a scrape
    (``flush``). What another worker has counted reaches a scrape within that
    second."""

    FLUSH_SECONDS = 1.0

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str | None, int], list[float]] = {}
        self._children: dict[tuple[str, str | None, int], tuple[Any, Any]] = {}
        self._bounds = tuple(HTTP_DURATION._upper_bounds)
        self._timer: asyncio.TimerHandle | None = None

    def record(self, method: str, route: str | None, status: int, seconds: float) -> None:
        key = (method, route, status)
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = [0.0] * (len(self._bounds) + 2)
            if self._timer is None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self.FLUSH_SECONDS, self.flush)
        row[0] += 1
        row[1] += seconds
        row[2 + bisect_left(self._bounds, seconds)] += 1

    def flush(self) -> None:
        """Add what was recorded since the last flush to the metrics."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for key, row in pending.items():
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = self._make(*key)
            counter, histogram = children
            counter.inc(row[0])
            histogram._sum.inc(row[1])
            for index, count in enumerate(row[2:]):
                if count:
                    histogram._buckets[index].inc(count)

    @staticmethod
    def _make(method: str, route: str | None, status: int) -> tuple[Any, Any]:
        method = method if method in _METHODS else "other"
        route = route or UNMATCHED_ROUTE
        return (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )


# The process's requests (every app of the process shares it).
HTTP = HttpRecorder()


class LedgerMetrics:
    """The ledger writer's observer (``GroupCommitQueue``'s ``observer``): one per
    writer; its queue depth is added to the process's gauge (several writers, e.g.
    an import's, add up)."""

    __slots__ = ("_depth", "_outcomes")

    def __init__(self) -> None:
        self._depth = 0
        self._outcomes = {outcome: LEDGER_MOVEMENTS.labels(outcome) for outcome in LEDGER_OUTCOMES}

    def batch_committed(self, size: int, seconds: float) -> None:
        LEDGER_BATCH_SIZE.observe(size)
        LEDGER_BATCH_DURATION.observe(seconds)

    def queue_depth(self, depth: int) -> None:
        if depth != self._depth:
            LEDGER_QUEUE_DEPTH.inc(depth - self._depth)
            self._depth = depth

    def movements(self, outcome: str, count: int) -> None:
        if count:
            self._outcomes[outcome].inc(count)


def job_ran(job: str, ok: bool) -> None:
    JOB_RUNS.labels(job, "ok" if ok else "failed").inc()


def import_rows(applied: int, already_applied: int, failed: int) -> None:
    for outcome, count in (
        ("applied", applied),
        ("already_applied", already_applied),
        ("failed", failed),
    ):
        if count > 0:
            IMPORT_ROWS.labels(outcome).inc(count)


def webhook_attempted(succeeded: bool, lag_seconds: float | None) -> None:
    WEBHOOK_DELIVERIES.labels("succeeded" if succeeded else "failed").inc()
    if lag_seconds is not None:
        WEBHOOK_LAG.observe(max(lag_seconds, 0.0))


class _BacklogCache:
    read_at = float("-inf")


async def refresh_webhook_backlog(count: Callable[[], Awaitable[int]]) -> None:
    """Set the backlog gauge from ``count()`` unless read less than
    ``BACKLOG_REFRESH_SECONDS`` ago; a failure keeps the last figure (logged)."""
    now = time.monotonic()
    if now - _BacklogCache.read_at < BACKLOG_REFRESH_SECONDS:
        return
    _BacklogCache.read_at = now
    try:
        WEBHOOK_BACKLOG.set(await count())
    except Exception as error:  # a scrape never fails for the backlog
        log.warning("webhook_backlog_unavailable", error=repr(error))


def forget_backlog_reading() -> None:
    """The next refresh reads the database (tests)."""
    _BacklogCache.read_at = float("-inf")


# --- exposition ------------------------------------------------------------------


def multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def _dead_pids(directory: str) -> Iterable[int]:
    """Processes (e.g. a worker uvicorn replaced) whose live gauges are still on disk."""
    pids: set[int] = set()
    for name in os.listdir(directory):
        if name.startswith("gauge_live") and name.endswith(".db"):
            with contextlib.suppress(ValueError):
                pids.add(int(name[:-3].rsplit("_", 1)[1]))
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            yield pid
        except PermissionError:
            continue


def exposition() -> bytes:
    """Every metric in the text format: summed over the workers in multiprocess
    mode, else this process's default registry."""
    HTTP.flush()
    directory = multiprocess_directory()
    if directory is None:
        return generate_latest(REGISTRY)
    for pid in _dead_pids(directory):
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def token_allows(authorization: str | None, token: str | None) -> bool:
    """No token configured: open. Else ``Authorization: Bearer <token>`` exactly."""
    if token is None:
        return True
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


_UNAUTHORIZED = {
    "error": {
        "code": "unauthorized",
        "message": "Send the metrics token as 'Authorization: Bearer <token>'.",
        "details": None,
    }
}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


def _wsgi_app(token: str | None) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in {"/", "/metrics"}:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not token_allows(environ.get("HTTP_AUTHORIZATION"), token):
            body = json.dumps(_UNAUTHORIZED).encode()
            start_response(
                "401 Unauthorized",
                [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
            )
            return [body]
        body = exposition()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [body]

    return app


class MetricsServer:
    """The worker's own ``/metrics`` listener, in a thread (``loyalty worker
    --metrics-port``); the same token rule as the API's."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.server = make_server(
            host, port, _wsgi_app(token), ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
