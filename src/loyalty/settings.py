"""One settings class, read from the environment (``LOYALTY_*``)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///loyalty.db"
EVENT_RETENTION_DAYS_MIN = 30
# The admin's signing key (sessions' CSRF tokens, notices), when given.
SECRET_KEY_CHARS_MIN = 32
# N/second|minute|hour with 1 <= N <= 1,000,000 (API keys take the same form).
RATE_LIMIT_PATTERN = re.compile(r"^([1-9][0-9]{0,6})/(second|minute|hour)$")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from error


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise ValueError(f"{name} must be a number, got {raw!r}") from error


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration. Names carry their units."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    database_pool_size: int = 10
    # Driver-level Postgres connections for the ledger writer and hot reads.
    raw_pool_size: int = 10
    # The ledger writer gathers concurrent movements into one transaction.
    ledger_batch_size_max: int = 256
    ledger_batch_wait_ms_max: float = 1.0
    ledger_batches_in_flight_max: int = 4
    # Idempotency records are kept at least this long (the contract says 7 days).
    idempotency_retention_days: int = 7
    # Largest request body accepted, in bytes; larger bodies answer 413.
    request_body_bytes_max: int = 64 * 1024
    # Largest CSV body of POST /api/v1/imports; larger bodies answer 413.
    import_bytes_max: int = 100 * 1024 * 1024
    # SQLite durability: FULL fsyncs every commit; NORMAL is faster but may lose
    # the last commits on power loss (never on a process crash).
    sqlite_synchronous: str = "FULL"
    log_level: str = "info"
    # Scheduled jobs inside `loyalty serve`: auto (on SQLite only), on or off.
    scheduler: str = "auto"
    scheduler_interval_seconds: float = 60.0
    # Requests per key when the key has no limit of its own (seed 001's figure).
    rate_limit_default: str = "100/minute"
    # Rate-limit counters in Redis (when redis_url is set) are kept under this prefix.
    redis_prefix: str = "loyalty"
    # Events are kept at least this many days (never fewer than 30).
    event_retention_days: int = 90
    # Webhook deliveries: networks that may be private and use http:// (development
    # and tests), and the time a receiver has to answer.
    webhook_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    webhook_timeout_seconds: float = 15.0
    # The admin UI's signing key (LOYALTY_SECRET_KEY, at least 32 characters); when
    # None, the instance generates one on first start and keeps it in the database.
    secret_key: str | None = None
    # GET /metrics (and `worker --metrics-port`) require `Authorization: Bearer
    # <this>` when set; open otherwise, like /healthz.
    metrics_token: str | None = None
    # LOYALTY_METRICS=off: requests are not counted or timed (the comparison of cost).
    metrics: bool = True
    # LOYALTY_FAST_PATH=off: the hottest endpoints (a customer, its redeemable rewards,
    # a points movement) are served by Litestar's router like every other (the
    # comparison of cost, and the reference the fast path is tested against).
    fast_path: bool = True
    # Tune the garbage collector once started (loyalty.gc_tuning); the processes of
    # `loyalty serve` and `loyalty worker` do (LOYALTY_GC_TUNING=off: CPython's defaults).
    gc_tuning: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        sqlite_synchronous = os.environ.get("LOYALTY_SQLITE_SYNCHRONOUS", "FULL").upper()
        if sqlite_synchronous not in {"FULL", "NORMAL"}:
            raise ValueError("LOYALTY_SQLITE_SYNCHRONOUS must be FULL or NORMAL")
        scheduler = os.environ.get("LOYALTY_SCHEDULER", "auto").lower()
        if scheduler not in {"auto", "on", "off"}:
            raise ValueError("LOYALTY_SCHEDULER must be auto, on or off")
        interval = _float_env("LOYALTY_SCHEDULER_INTERVAL_SECONDS", 60.0)
        if interval <= 0:
            raise ValueError("LOYALTY_SCHEDULER_INTERVAL_SECONDS must be positive")
        rate_limit_default = os.environ.get("LOYALTY_RATE_LIMIT_DEFAULT", "100/minute").lower()
        match = RATE_LIMIT_PATTERN.match(rate_limit_default.strip())
        if match is None or int(match.group(1)) > 1_000_000:
            raise ValueError("LOYALTY_RATE_LIMIT_DEFAULT must look like 100/minute")
        from loyalty.webhooks.urls import parse_allowed_networks

        retention = _int_env("LOYALTY_EVENT_RETENTION_DAYS", 90)
        if retention < EVENT_RETENTION_DAYS_MIN:
            raise ValueError(
                f"LOYALTY_EVENT_RETENTION_DAYS must be at least {EVENT_RETENTION_DAYS_MIN}"
            )
        webhook_timeout = _float_env("LOYALTY_WEBHOOK_TIMEOUT_SECONDS", 15.0)
        if not 0 < webhook_timeout <= 60:
            raise ValueError("LOYALTY_WEBHOOK_TIMEOUT_SECONDS must be between 0 and 60")
        secret_key = os.environ.get("LOYALTY_SECRET_KEY") or None
        if secret_key is not None and len(secret_key) < SECRET_KEY_CHARS_MIN:
            raise ValueError(
                f"LOYALTY_SECRET_KEY must be at least {SECRET_KEY_CHARS_MIN} characters "
                "(or unset it: the instance then generates and keeps one)"
            )
        metrics = os.environ.get("LOYALTY_METRICS", "on").strip().lower()
        if metrics not in {"on", "off"}:
            raise ValueError("LOYALTY_METRICS must be on or off")
        fast_path = os.environ.get("LOYALTY_FAST_PATH", "on").strip().lower()
        if fast_path not in {"on", "off"}:
            raise ValueError("LOYALTY_FAST_PATH must be on or off")
        gc_tuning = os.environ.get("LOYALTY_GC_TUNING", "on").strip().lower()
        if gc_tuning not in {"on", "off"}:
            raise ValueError("LOYALTY_GC_TUNING must be on or off")
        return cls(
            gc_tuning=gc_tuning == "on",
            fast_path=fast_path == "on",
            metrics_token=os.environ.get("LOYALTY_METRICS_TOKEN") or None,
            metrics=metrics == "on",
            secret_key=secret_key,
            event_retention_days=retention,
            webhook_allowed_networks=parse_allowed_networks(
                os.environ.get("LOYALTY_WEBHOOK_ALLOWED_NETWORKS")
            ),
            webhook_timeout_seconds=webhook_timeout,
            rate_limit_default=rate_limit_default.strip(),
            redis_prefix=os.environ.get("LOYALTY_REDIS_PREFIX") or "loyalty",
            database_url=os.environ.get("LOYALTY_DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=os.environ.get("LOYALTY_REDIS_URL") or None,
            database_pool_size=_int_env("LOYALTY_DATABASE_POOL_SIZE", 10),
            raw_pool_size=_int_env("LOYALTY_RAW_POOL_SIZE", 10),
            ledger_batch_size_max=max(1, _int_env("LOYALTY_LEDGER_BATCH_SIZE_MAX", 256)),
            ledger_batch_wait_ms_max=_float_env("LOYALTY_LEDGER_BATCH_WAIT_MS_MAX", 1.0),
            ledger_batches_in_flight_max=max(
                1, _int_env("LOYALTY_LEDGER_BATCHES_IN_FLIGHT_MAX", 4)
            ),
            idempotency_retention_days=_int_env("LOYALTY_IDEMPOTENCY_RETENTION_DAYS", 7),
            request_body_bytes_max=_int_env("LOYALTY_REQUEST_BODY_BYTES_MAX", 64 * 1024),
            import_bytes_max=_int_env("LOYALTY_IMPORT_BYTES_MAX", 100 * 1024 * 1024),
            sqlite_synchronous=sqlite_synchronous,
            log_level=os.environ.get("LOYALTY_LOG_LEVEL", "info").lower(),
            scheduler=scheduler,
            scheduler_interval_seconds=interval,
        )
